"""Google Speech Commands: the audio front end (hand-computed values) and the loader.

The loader is tested on small folders built in ``tmp_path`` and, when the project's shared data is
present, on the official v0.02 12-class test set (4,890 FLAC clips; features computed once per
module with a cold cache, about 10 s on 2 cores).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from toolchain.data import audio_features as af
from toolchain.data import gsc, load_dataset
from toolchain.data.base import Dataset
from toolchain.errors import DataError, RecipeError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
no_shared_data = pytest.mark.skipif(
    not (SHARED / "gsc").is_dir(), reason=f"shared data not found at {SHARED / 'gsc'}"
)

SR = af.SAMPLE_RATE
#: per-class clip counts of the official v0.02 12-class test set (README of the shared data)
TESTSET_COUNTS = {
    "yes": 419, "no": 405, "up": 425, "down": 406, "left": 412, "right": 396, "on": 396, "off": 402,
    "stop": 411, "go": 402, "_silence_": 408, "_unknown_": 408,
}  # fmt: skip
#: the first training sample of the default 12-class load of the shared data, computed once
FIRST_TRAIN_KEY = "_silence_/1024"
FIRST_TRAIN_NAME = "_silence_/1024.flac"
FIRST_TRAIN_SHA256 = "c292b1ddc109eab2b339485d4709dfada7486b7f11a7d3196e98c4b4ffee41a8"


# --- the front end ------------------------------------------------------------------------------


def test_frame_count_and_shapes() -> None:
    assert af.num_frames(16_000) == 1 + (16_000 - 480) // 320 == 49
    assert af.num_frames(480) == 1
    with pytest.raises(ValueError, match="shorter than one 480-sample window"):
        af.num_frames(479)
    audio = np.zeros((3, 16_000), dtype=np.float32)
    assert af.power_spectrogram(audio).shape == (3, 257, 49)
    for features, shape in ((af.log_mel_spectrogram(audio), (3, 40, 49)), (af.mfcc(audio), (3, 10, 49))):
        assert features.shape == shape
        assert features.dtype == np.float32
    assert af.compute_features(audio, "logmel", 32).shape == (3, 32, 49)
    assert af.compute_features(audio, "mfcc", 13).shape == (3, 13, 49)


def test_slaney_mel_scale() -> None:
    # linear below 1 kHz (3 mels per 200 Hz), 27 mels per factor 6.4 above it
    assert af.hz_to_mel(200.0 / 3.0) == pytest.approx(1.0)
    assert af.hz_to_mel(1000.0) == pytest.approx(15.0)
    assert af.hz_to_mel(6400.0) == pytest.approx(42.0)
    hz = np.array([0.0, 20.0, 500.0, 1000.0, 2500.0, 4000.0, 8000.0])
    np.testing.assert_allclose(af.mel_to_hz(af.hz_to_mel(hz)), hz, rtol=1e-12, atol=1e-9)


def test_mel_filterbank_is_unit_area_triangles() -> None:
    weights = af.mel_filterbank()
    assert weights.shape == (40, 257)
    bin_hz = 16_000 / 512  # 31.25 Hz
    edges = af.mel_to_hz(np.linspace(af.hz_to_mel(20.0), af.hz_to_mel(4000.0), 42))
    assert edges[0] == pytest.approx(20.0) and edges[-1] == pytest.approx(4000.0)
    assert (weights >= 0).all()
    assert not weights[:, 0].any() and not weights[:, 128:].any()  # nothing at 0 Hz or >= 4 kHz
    for i, row in enumerate(weights):
        support = np.flatnonzero(row)
        freqs = support * bin_hz
        assert edges[i] < freqs.min() and freqs.max() < edges[i + 2]  # inside its two outer edges
        assert np.array_equal(support, np.arange(support[0], support[-1] + 1))  # one contiguous run
        peak = int(np.argmax(row))
        assert abs(peak * bin_hz - edges[i + 1]) <= bin_hz  # peaks at its centre edge
        assert (np.diff(row[support[0] : peak + 1]) > 0).all()  # rises ...
        assert (np.diff(row[peak : support[-1] + 1]) < 0).all()  # ... then falls
        assert row.max() <= 2.0 / (edges[i + 2] - edges[i])  # the triangle's height
        assert row.sum() * bin_hz == pytest.approx(1.0, abs=0.04)  # unit area (Riemann sum)


def test_orthonormal_dct() -> None:
    dct = af.dct_matrix(40, 40)
    np.testing.assert_allclose(dct @ dct.T, np.eye(40), atol=1e-12)
    assert dct[1, 0] == pytest.approx(np.sqrt(2 / 40) * np.cos(np.pi / 80))
    coeffs = af.dct_matrix(10, 40) @ np.full(40, 3.0)  # a constant has only a DC term: c sqrt(N)
    np.testing.assert_allclose(coeffs, [3.0 * np.sqrt(40)] + [0.0] * 9, atol=1e-12)


def test_silence_is_the_floor() -> None:
    silence = np.zeros((1, 16_000), dtype=np.float32)
    np.testing.assert_array_equal(af.log_mel_spectrogram(silence), -100.0)  # 10 log10(1e-10)
    mfcc = af.mfcc(silence)[0]
    np.testing.assert_allclose(mfcc[0], -100.0 * np.sqrt(40), rtol=1e-6)
    np.testing.assert_allclose(mfcc[1:], 0.0, atol=1e-3)


def test_power_spectrum_of_a_cosine_and_parseval() -> None:
    t = np.arange(16_000) / SR
    # 1 kHz is 30 whole cycles of a 480-sample frame and FFT bin 32 of 512: X[32] = A/2 * sum(hann) = 120 A
    power = af.power_spectrogram(0.5 * np.cos(2 * np.pi * 1000.0 * t)[None])[0]
    np.testing.assert_allclose(power[32], 60.0**2, rtol=1e-6)
    assert (power.argmax(axis=0) == 32).all()
    # Parseval on a random frame: the full 512-point spectrum sums to 512 * sum((hann * frame)^2)
    audio = np.random.default_rng(0).uniform(-1, 1, (1, 16_000)).astype(np.float32)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(480) / 480)
    spectrum = af.power_spectrogram(audio)[0, :, 7]
    frame = audio[0, 7 * 320 : 7 * 320 + 480] * hann
    total = spectrum[0] + spectrum[256] + 2 * spectrum[1:256].sum()
    assert total == pytest.approx(512 * np.sum(frame**2), rel=1e-9)


@pytest.mark.parametrize("band", [0, 5, 17, 18, 30, 39])
def test_a_sine_lands_in_its_mel_band(band: int) -> None:
    centre = af.mel_to_hz(np.linspace(af.hz_to_mel(20.0), af.hz_to_mel(4000.0), 42))[band + 1]
    t = np.arange(16_000) / SR
    log_mel = af.log_mel_spectrogram(0.5 * np.sin(2 * np.pi * centre * t)[None])[0]
    assert (log_mel.argmax(axis=0) == band).all()


def test_mfcc_is_the_dct_of_the_log_mel() -> None:
    audio = np.random.default_rng(1).normal(0, 0.1, (2, 16_000)).astype(np.float32)
    expected = np.einsum(
        "kb,nbt->nkt", af.dct_matrix(10, 40), af.log_mel_spectrogram(audio).astype(np.float64)
    )
    np.testing.assert_allclose(af.mfcc(audio), expected, rtol=1e-5, atol=1e-3)


# --- the loader on folders built here ------------------------------------------------------------


def _write(path: Path, seconds: float = 1.0, rate: int = SR, seed: int = 0, fmt: str = "WAV") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(seed).normal(0, 0.05, int(seconds * rate)).clip(-1, 1)
    soundfile.write(path, noise, rate, format=fmt, subtype="PCM_16")
    return path


def _words_folder(root: Path, words: tuple[str, ...] = (*gsc.COMMANDS, "bed", "cat")) -> Path:
    """``root/gsc/speech_commands/<word>/<speaker>_nohash_<n>.wav``: 3 speakers, 2 clips each."""
    folder = root / "gsc" / "speech_commands"
    seed = 0
    for word in words:
        for speaker in ("0a7c2a8d", "1b2c3d4e", "9f8e7d6c"):
            for n in range(2):
                seed += 1
                _write(folder / word / f"{speaker}_nohash_{n}.wav", seconds=0.8, seed=seed)
    _write(folder / gsc.NOISE / "white_noise.wav", seconds=3.5)
    return folder


@pytest.fixture
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("TOOLCHAIN_CACHE", str(cache))
    return cache


def test_words_folder_12class_and_cache(tmp_path: Path, tmp_cache: Path) -> None:
    _words_folder(tmp_path)
    ds = load_dataset("gsc", tmp_path, {"split": "speaker", "test_fraction": 0.5})
    assert ds.classes == gsc.CLASSES_12
    counts = Counter(ds.classes[y] for y in np.concatenate([ds.train.y, ds.test.y]))
    assert counts == {**{w: 6 for w in gsc.COMMANDS}, "_unknown_": 12, "_silence_": 3}  # 3 s of noise
    assert ds.sample_shape == (10, 49) and ds.train.x.dtype == np.float32
    assert len(ds.train) and len(ds.test)
    assert isinstance(ds.train.x, np.memmap)
    cached = list((tmp_cache / "gsc-features").glob("*.npy"))
    assert len(cached) == 1
    again = load_dataset("gsc", tmp_path, {"split": "speaker", "test_fraction": 0.5})
    np.testing.assert_array_equal(again.test.x, ds.test.x)
    assert list((tmp_cache / "gsc-features").glob("*.npy")) == cached  # reused, not recomputed
    logmel = load_dataset("gsc", tmp_path, {"features": "logmel", "num_features": 20})
    assert logmel.sample_shape == (20, 49)
    assert len(list((tmp_cache / "gsc-features").glob("*.npy"))) == 2


def test_official_lists_when_they_cover_the_folder(tmp_path: Path, tmp_cache: Path) -> None:
    folder = _words_folder(tmp_path, gsc.COMMANDS)
    (folder / "testing_list.txt").write_text("yes/0a7c2a8d_nohash_0.wav\nno/1b2c3d4e_nohash_1.wav\n")
    (folder / "validation_list.txt").write_text("up/9f8e7d6c_nohash_0.wav\n")
    selection = gsc.select_clips(tmp_path, gsc.Options(task="12class"))
    assert "official split" in selection.description
    words = [c.key for c in selection.test if c.label != 0]
    assert words == ["yes/0a7c2a8d_nohash_0", "no/1b2c3d4e_nohash_1"]  # label order, then key
    assert "up/9f8e7d6c_nohash_0" in {c.key for c in selection.train}  # validation goes to train
    (folder / "testing_list.txt").write_text("yes/0a7c2a8d_nohash_0.wav\nyes/ffffffff_nohash_0.wav\n")
    auto = gsc.select_clips(tmp_path, gsc.Options())
    assert "speaker-disjoint" in auto.description and "ffffffff" in auto.description
    with pytest.raises(DataError, match=r"split = 'official'.*yes/ffffffff_nohash_0"):
        gsc.select_clips(tmp_path, gsc.Options(split="official"))


def test_missing_folder_names_the_layout(tmp_path: Path, tmp_cache: Path) -> None:
    with pytest.raises(DataError, match=r"gsc: folder not found; expected <data_root>/gsc/ to hold"):
        load_dataset("gsc", tmp_path)
    (tmp_path / "gsc").mkdir()
    with pytest.raises(DataError, match=r"no clip folder for task '12class'.*class folders"):
        load_dataset("gsc", tmp_path)


def test_35class_needs_all_words(tmp_path: Path, tmp_cache: Path) -> None:
    _words_folder(tmp_path, gsc.COMMANDS)
    with pytest.raises(DataError, match=r"lacks 25 word\(s\): backward, bed, bird"):
        load_dataset("gsc", tmp_path, {"task": "35class"})


@pytest.mark.parametrize("suffix", ["wav", "flac"])
def test_corrupt_clip_is_named(tmp_path: Path, tmp_cache: Path, suffix: str) -> None:
    folder = _words_folder(tmp_path, gsc.COMMANDS)
    bad = folder / "go" / f"deadbeef_nohash_0.{suffix}"
    bad.write_bytes(b"RIFF\x00\x00garbage" if suffix == "wav" else b"fLaC\x00\x00\x00garbage")
    with pytest.raises(DataError, match=rf"deadbeef_nohash_0\.{suffix}: cannot decode audio"):
        load_dataset("gsc", tmp_path)


def test_wrong_sample_rate_is_named(tmp_path: Path, tmp_cache: Path) -> None:
    folder = _words_folder(tmp_path, gsc.COMMANDS)
    _write(folder / "stop" / "0badc0de_nohash_0.flac", rate=8_000, fmt="FLAC")
    with pytest.raises(DataError, match=r"0badc0de_nohash_0\.flac: sample rate 8000 Hz; expected 16000 Hz"):
        load_dataset("gsc", tmp_path)


def test_short_and_long_clips_are_padded_or_trimmed(tmp_path: Path) -> None:
    short = gsc.read_clip(_write(tmp_path / "short.wav", seconds=0.5))
    long = gsc.read_clip(_write(tmp_path / "long.flac", seconds=1.5, fmt="FLAC"))
    assert short.shape == long.shape == (16_000,) and short.dtype == np.float32
    assert short[:8_000].any() and not short[8_000:].any()
    full, _ = soundfile.read(tmp_path / "long.flac", dtype="float32")
    np.testing.assert_array_equal(long, full[:16_000])


def test_speaker_ids() -> None:
    assert gsc.speaker_id("yes/0a7c2a8d_nohash_0") == "0a7c2a8d"
    assert gsc.speaker_id("_silence_/1024") == "_silence_/1024"
    assert 0 <= gsc.speaker_fraction("0a7c2a8d") < 1
    assert gsc.speaker_fraction("0a7c2a8d") == gsc.speaker_fraction("0a7c2a8d")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_features": 0}, "num_features"),
        ({"num_features": 41}, "at most 40 MFCC"),
        ({"features": "logmel", "num_features": 300}, "no FFT bin"),
        ({"task": "20class"}, "task"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"normalize": "zscore"}, r"\[data\.options\]\.normalize: expected one of 'none', 'minmax'"),
        ({"max_clipped_fraction": 1.5}, r"max_clipped_fraction: expected a number in \[0, 1\]"),
    ],
)
def test_bad_options(tmp_path: Path, options: dict[str, object], message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        load_dataset("gsc", tmp_path, options)


# --- min-max normalization ----------------------------------------------------------------------


def test_minmax_scale_hand_computed() -> None:
    # channel 0 spans [0, 4] over the train clips and frames, channel 1 spans [10, 30]
    train = np.array([[[0, 1, 2], [10, 10, 20]], [[4, 3, 2], [30, 10, 10]]], dtype=np.float32)
    test = np.array([[[-2, 2, 6], [20, 40, 10]]], dtype=np.float32)
    train_x, test_x, report = gsc.minmax_scale(train, test)
    np.testing.assert_array_equal(report.low, [0, 10])
    np.testing.assert_array_equal(report.high, [4, 30])
    expected_train = [[[0, 0.25, 0.5], [0, 0, 0.5]], [[1, 0.75, 0.5], [1, 0, 0]]]
    np.testing.assert_array_equal(train_x, np.array(expected_train, dtype=np.float32))
    # -2 -> -0.5 and 6 -> 1.5 in channel 0, 40 -> 1.5 in channel 1: clipped to 0, 1, 1
    np.testing.assert_array_equal(test_x, np.array([[[0, 0.5, 1], [0.5, 1, 0]]], dtype=np.float32))
    assert train_x.dtype == test_x.dtype == np.float32
    assert (report.train_clipped, report.train_values) == (0, 12)
    assert (report.test_clipped, report.test_values) == (3, 6)
    assert report.test_fraction == 0.5 and report.test_excess == pytest.approx(0.5)
    assert "test: 3 of 6 values (50.000%) clipped into [0, 1], at most 0.5 outside" in report.describe()


def test_minmax_scale_refuses_what_it_cannot_scale() -> None:
    constant = np.array([[[1, 2], [5, 5]], [[0, 3], [5, 5]]], dtype=np.float32)
    with pytest.raises(DataError, match=r"feature channel 1 is constant \(5\) over the train split"):
        gsc.minmax_scale(constant, constant)
    with pytest.raises(DataError, match=r"the train split is empty"):
        gsc.minmax_scale(np.zeros((0, 2, 3), np.float32), constant)


def test_standard_scale_hand_computed() -> None:
    # channel 0: values 0, 2, 4, 2 (mean 2, std sqrt(2)); channel 1: 1, 1, 1, 5 (mean 2, std sqrt(3))
    train = np.array([[[0, 2], [1, 1]], [[4, 2], [1, 5]]], dtype=np.float32)
    test = np.array([[[2, 9], [2, -9]]], dtype=np.float32)
    train_x, test_x, report = gsc.standard_scale(train, test, sigmas=1.0)
    np.testing.assert_allclose(report.low, [2 - 2**0.5, 2 - 3**0.5])
    np.testing.assert_allclose(report.high, [2 + 2**0.5, 2 + 3**0.5])
    # (x - low) / (2 * std): 0 -> -0.207 (clipped to 0), 2 -> 0.5, 4 -> 1.207 (clipped to 1)
    np.testing.assert_allclose(train_x[:, 0], [[0, 0.5], [1, 0.5]])
    assert train_x[1, 1, 1] == 1.0  # 5 -> 1.077, clipped
    np.testing.assert_allclose(test_x, [[[0.5, 1.0], [0.5, 0.0]]])
    assert (report.train_clipped, report.test_clipped) == (3, 2)
    assert "mean +- 1 standard deviations" in report.describe()
    with pytest.raises(DataError, match=r"clip_sigmas = 3\): feature channel 0 is constant"):
        gsc.standard_scale(np.ones((2, 1, 3), np.float32), np.ones((1, 1, 3), np.float32), sigmas=3.0)


def test_minmax_option_scales_with_train_statistics(tmp_path: Path, tmp_cache: Path) -> None:
    _words_folder(tmp_path)
    options = {"split": "speaker", "test_fraction": 0.5}
    raw = load_dataset("gsc", tmp_path, options)
    assert "minmax per feature" not in raw.source and raw.train.x.min() < 0  # "none" (default): MFCCs
    ds = load_dataset("gsc", tmp_path, {**options, "normalize": "minmax", "max_clipped_fraction": 1.0})
    low = raw.train.x.min(axis=(0, 2))[:, None].astype(np.float64)
    high = raw.train.x.max(axis=(0, 2))[:, None].astype(np.float64)
    np.testing.assert_allclose(ds.train.x, (raw.train.x - low) / (high - low), atol=1e-6)
    np.testing.assert_array_equal(ds.train.x.min(axis=(0, 2)), 0.0)  # every channel spans [0, 1]
    np.testing.assert_array_equal(ds.train.x.max(axis=(0, 2)), 1.0)
    unclipped = (raw.test.x - low) / (high - low)
    np.testing.assert_allclose(ds.test.x, unclipped.clip(0, 1), atol=1e-6)
    outside = int(((unclipped < 0) | (unclipped > 1)).sum())
    assert outside > 0  # these noise clips do leave the train range: the count is reported
    assert f"test: {outside} of {raw.test.x.size} values" in ds.source
    with pytest.raises(DataError, match=r"normalize = 'minmax'.*more than max_clipped_fraction = 0"):
        load_dataset("gsc", tmp_path, {**options, "normalize": "minmax", "max_clipped_fraction": 0.0})


# --- the shared data: the official v0.02 12-class test set ----------------------------------------


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cold feature cache for this module's shared-data tests (the shared folder is read-only)."""
    cache = tmp_path_factory.mktemp("gsc-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TOOLCHAIN_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="module")
def testset(shared_cache: Path) -> Dataset:
    return load_dataset("gsc", SHARED)


@pytest.mark.shared_data
@no_shared_data
class TestSharedTestSet:
    def test_counts_shapes_and_dtypes(self, testset: Dataset) -> None:
        assert testset.classes == gsc.CLASSES_12
        labels = np.concatenate([testset.train.y, testset.test.y])
        assert len(labels) == 4_890
        assert Counter(testset.classes[y] for y in labels) == TESTSET_COUNTS
        assert testset.sample_shape == (10, 49)
        for split in (testset.train, testset.test):
            assert isinstance(split.x, np.memmap) and split.x.dtype == np.float32
            assert split.x.shape[1:] == (10, 49) and split.y.dtype == np.int64
            assert np.isfinite(split.x).all()
        assert 0.15 < len(testset.test) / len(labels) < 0.25  # test_fraction 0.2 of the speakers
        assert "speaker-disjoint" in testset.source

    def test_speakers_are_disjoint(self, shared_cache: Path) -> None:
        selection = gsc.select_clips(SHARED, gsc.Options())
        train = {c.speaker for c in selection.train}
        test = {c.speaker for c in selection.test}
        assert train and test and not train & test
        # the _unknown_ clips' word prefix is not part of the speaker id
        unknown = [c for c in selection.train + selection.test if c.label == 1]
        assert all("_" not in c.speaker and len(c.speaker) == 8 for c in unknown)

    def test_first_sample(self, testset: Dataset, shared_cache: Path) -> None:
        first = gsc.select_clips(SHARED, gsc.Options()).train[0]
        assert (first.key, first.name, first.label) == (FIRST_TRAIN_KEY, FIRST_TRAIN_NAME, 0)
        audio = gsc.read_clip(first.path)
        pcm = np.round(audio * 32768).astype("<i2").tobytes()
        assert hashlib.sha256(pcm).hexdigest() == FIRST_TRAIN_SHA256
        np.testing.assert_array_equal(testset.train.x[0], af.mfcc(audio[None])[0])

    def test_35class_from_the_test_set(self, shared_cache: Path) -> None:
        ds = load_dataset("gsc", SHARED, {"task": "35class", "limit_train": 40, "limit_test": 10})
        assert ds.classes == gsc.CLASSES_35 and len(ds.classes) == 35
        assert (len(ds.train), len(ds.test)) == (40, 10)
        selection = gsc.select_clips(SHARED, gsc.Options(task="35class"))
        labels = Counter(c.label for c in selection.train + selection.test)
        assert len(labels) == 35 and sum(labels.values()) == 4_890 - 408  # no silence
        assert labels[gsc.CLASSES_35.index("visual")] == 6

    def test_limits_pick_a_subset(self, testset: Dataset, shared_cache: Path) -> None:
        options = {"limit_train": 50, "limit_test": 20, "seed": 3}
        small = load_dataset("gsc", SHARED, options)
        assert (len(small.train), len(small.test)) == (50, 20)
        full = gsc.select_clips(SHARED, gsc.Options())
        part = gsc.select_clips(SHARED, gsc.Options(**options))
        index = {c.key: i for i, c in enumerate(full.train)}
        rows = [index[c.key] for c in part.train]
        np.testing.assert_array_equal(small.train.x, testset.train.x[rows])
        assert part.train == gsc.select_clips(SHARED, gsc.Options(**options)).train  # deterministic

    def test_minmax_fits_loihi_graded_input(self, testset: Dataset, shared_cache: Path) -> None:
        ds = load_dataset("gsc", SHARED, {"normalize": "minmax"})
        assert ds.train.x.min() == 0.0 and ds.train.x.max() == 1.0
        assert ds.test.x.min() >= 0.0 and ds.test.x.max() <= 1.0
        # measured: 27 test values (0.006%) leave the train range, by at most 0.0354
        assert "test: 27 of 447370 values (0.006%) clipped into [0, 1], at most 0.0354 outside" in ds.source

    def test_official_split_needs_the_full_data_set(self, shared_cache: Path) -> None:
        with pytest.raises(DataError, match=r"lists_v0\.02 name 20986 clips.*belong to the full data set"):
            gsc.select_clips(SHARED, gsc.Options(split="official"))
