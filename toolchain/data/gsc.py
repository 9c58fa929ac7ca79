"""Google Speech Commands (GSC): 1-s, 16 kHz spoken words as MFCC or log-mel features.

Samples are ``float32`` shaped ``(num_features, 49)`` (see :mod:`toolchain.data.audio_features`);
labels index :data:`CLASSES_12` or :data:`CLASSES_35`.

**Layout.** ``<data_root>/gsc/`` holds a *clip folder*: a folder of class folders of 1-s, 16 kHz
mono clips (``.wav`` or ``.flac``), either unpacked or inside an archive. Two kinds are recognised:

- a *words folder*, one folder per spoken word (``yes/0a7c2a8d_nohash_0.wav``), optionally with
  ``_background_noise_/`` (long noise recordings) and ``_silence_/``: the official
  ``speech_commands_v0.02`` (35 words) or ``v0.01`` (30 words) data set;
- a *12-class test set folder*, with ``_silence_/``, ``_unknown_/`` and the ten command words:
  the official ``speech_commands_test_set_v0.02``. Its ``_unknown_`` clips keep their word in the
  file name (``_unknown_/backward_0c540988_nohash_0.wav.flac``).

**Search order.** The first clip folder that has the task's words is used:

1. ``<data_root>/gsc/`` itself, then its sub-folders in name order (hidden ones skipped), words
   folders before 12-class test set folders;
2. the archives in ``<data_root>/gsc/``, in the order of :data:`ARCHIVES` (the official full
   v0.02 archive, the v0.02 12-class test set as shipped in the shared data or as published, then
   v0.01 archives), each unpacked once into the cache and searched as in 1.

The ``12class`` task needs the ten command words; ``35class`` needs all 35 v0.02 words, as folders
or, in the 12-class test set, as ``_unknown_`` file-name prefixes. The shared data's 12-class test
set has them all, so ``35class`` falls back on it (4,482 clips, as few as 6 for a word) when no full
v0.02 folder is found; the 300-clip v0.01 subset lacks five of the 35 words.

**Tasks and class order.**

- ``12class``: :data:`CLASSES_12` = ``_silence_, _unknown_, yes, no, up, down, left, right, on, off,
  stop, go`` (TensorFlow's speech-commands order). From a words folder: the ten commands, every
  other word as ``_unknown_``, and as ``_silence_`` the clips of a ``_silence_/`` folder plus every
  whole second of each ``_background_noise_/`` recording (non-overlapping 1-s crops). From the
  12-class test set: its folders as they are.
- ``35class``: :data:`CLASSES_35`, the 35 v0.02 words in alphabetical order; silence, background
  noise and words outside the 35 are left out.

**Splits** (the data set has a train and a test split; there is no validation split):

- ``official``: ``testing_list.txt`` (with ``validation_list.txt``) from the clip folder, else from
  ``<data_root>/gsc/``, else ``<data_root>/gsc/lists_v0.02/``. Clips named in the testing list are
  test, all others (the validation list included) train. The lists apply only if every clip they
  name is in the clip folder (they cover it); silence clips, which no list names, follow the
  speaker rule below.
- ``speaker``: speaker-disjoint and stable on every machine. The speaker id is the file name's part
  before ``_nohash_`` (its last ``_``-separated token, which drops the word prefix of the test set's
  ``_unknown_`` clips); a speaker's clips are all test when ``sha1(speaker id)``, read as a
  fraction in [0, 1), is below ``test_fraction``, as the official lists were made. Clips with no
  speaker (``_silence_/1024.flac``, background-noise crops) are their own speaker, identified by
  their key (``_silence_/1024``, ``_background_noise_/white_noise#7``).
- ``auto`` (default): ``official`` when lists are found and cover the clips, else ``speaker``.

The split does not depend on ``seed``; ``seed`` only picks the random subsets kept by
``limit_train`` / ``limit_test``. Each split is ordered by label, then by clip key.

**Normalization** (``normalize``): ``none`` keeps the features as computed; ``minmax`` scales each
feature channel ``c`` to ``(x - min_c) / (max_c - min_c)`` with the minimum and maximum over all
clips and frames of the train split only (:func:`minmax_scale`), applied to both splits, so that
the samples suit Loihi's 8-bit graded input (``round(x * 255)``, [0, 1]); ``standard`` maps the
channel's train mean +- ``clip_sigmas`` standard deviations onto [0, 1] (:func:`standard_scale`),
which gives the bulk of the values more of the 8 bits. Values outside [0, 1] are clipped and
counted in the dataset's ``source``; more than ``max_clipped_fraction`` of the test values is a
:class:`DataError`, and so is a channel that is constant over the train split.

**Audio.** Decoded with ``soundfile`` as float32 in [-1, 1]; a clip must be 16 kHz mono. Shorter
clips are zero-padded at the end to 16,000 samples and longer ones keep their first 16,000 samples
(as TensorFlow's ``decode_wav(desired_samples=16000)``). A corrupt file, a wrong sample rate or
channel count is a :class:`DataError` naming the file.

**Cache.** Features are computed once (with a progress bar on a terminal) and stored in
``cache_dir(data_root)/gsc-features/<key>.npy``, where the key hashes the ordered clip list (names,
sizes, modification times, crop offsets), the feature settings and the versions of the feature and
decoding code; the file is written to a temporary name and renamed into place, and loaded
memory-mapped (the train and test arrays are views into it).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
from tqdm import tqdm

from toolchain.data import audio_features as af
from toolchain.data.archive import unpacked
from toolchain.data.base import ArraySplit, Dataset, DatasetShape, cache_dir
from toolchain.errors import DataError
from toolchain.schema import bounded, choice

#: bump when decoding, padding or clip selection changes the audio fed to the front end
LOADER_VERSION = 1

COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
AUXILIARY_WORDS = (
    "backward", "bed", "bird", "cat", "dog", "eight", "five", "follow", "forward", "four", "happy",
    "house", "learn", "marvin", "nine", "one", "seven", "sheila", "six", "three", "tree", "two",
    "visual", "wow", "zero",
)  # fmt: skip
SILENCE = "_silence_"
UNKNOWN = "_unknown_"
NOISE = "_background_noise_"
CLASSES_12 = (SILENCE, UNKNOWN, *COMMANDS)
CLASSES_35 = tuple(sorted(COMMANDS + AUXILIARY_WORDS))

#: archives looked for in ``<data_root>/gsc/``, in this order, when no unpacked folder serves
ARCHIVES = (
    "speech_commands_v0.02.tar.gz",
    "gsc_v0.02_testset_12class_flac.tar",
    "speech_commands_test_set_v0.02.tar.gz",
    "gsc_v0.01_subset_10perword_wav.tar.gz",
    "speech_commands_v0.01.tar.gz",
)
AUDIO_SUFFIXES = (".wav", ".flac")
NOHASH = "_nohash_"
#: clips decoded and transformed per step (bounds memory: about 60 MB of audio and spectra)
CHUNK_CLIPS = 512
_LAYOUT = (
    "expected <data_root>/gsc/ to hold a folder of class folders of 1-s 16 kHz mono clips "
    "(yes/, no/, ... as .wav or .flac; e.g. the official speech_commands_v0.02.tar.gz unpacked) "
    f"or one of the archives {', '.join(ARCHIVES)}"
)


@dataclass(frozen=True)
class Options:
    """``[data.options]`` of ``dataset = "gsc"``; see the module docstring."""

    task: str = choice("12class", "35class", default="12class")
    features: str = choice("mfcc", "logmel", default="mfcc")
    #: MFCC coefficients (default 10, at most 40) or log-mel bands (default 40)
    num_features: int | None = bounded(None, gt=0)
    split: str = choice("auto", "official", "speaker", default="auto")
    #: share of speakers in the test split (speaker split)
    test_fraction: float = bounded(0.2, gt=0, lt=1)
    #: picks the random subsets of ``limit_train`` / ``limit_test`` (not the split)
    seed: int = bounded(0, ge=0, le=2**32 - 1)
    limit_train: int | None = bounded(None, gt=0)
    limit_test: int | None = bounded(None, gt=0)
    #: ``minmax``: each feature channel scaled into [0, 1] by its train-split min and max;
    #: ``standard``: its train-split mean +- ``clip_sigmas`` standard deviations mapped onto [0, 1]
    normalize: str = choice("none", "minmax", "standard", default="none")
    #: the largest share of test values that may fall outside [0, 1] (clipped, counted)
    max_clipped_fraction: float = bounded(0.001, ge=0, le=1)
    #: ``standard``: how many standard deviations either side of the mean [0, 1] covers
    clip_sigmas: float = bounded(3.0, gt=0, le=100)

    def __post_init__(self) -> None:
        count = self.feature_count
        if count < 1:
            raise ValueError(f"num_features must be positive, got {count}")
        if self.features == "mfcc" and count > af.NUM_MELS:
            raise ValueError(f"num_features: at most {af.NUM_MELS} MFCC coefficients, got {count}")
        if self.features == "logmel":
            if count > 4 * af.N_FFT:  # checked first: the filterbank of 10^9 bands would not fit in memory
                raise ValueError(
                    f"num_features: {count} mel bands leave filters with no FFT bin (n_fft={af.N_FFT} "
                    f"has {af.N_FFT // 2 + 1} bins); use fewer bands"
                )
            try:
                af.mel_filterbank(count)  # raises ValueError when bands would be empty
            except ValueError as exc:
                raise ValueError(f"num_features: {exc}") from None

    @property
    def feature_count(self) -> int:
        """``num_features``, or its default for ``features`` (10 MFCCs, 40 log-mel bands)."""
        if self.num_features is not None:
            return self.num_features
        return af.NUM_MFCC if self.features == "mfcc" else af.NUM_MELS

    @property
    def classes(self) -> tuple[str, ...]:
        return CLASSES_12 if self.task == "12class" else CLASSES_35


@dataclass(frozen=True)
class Clip:
    """One 1-s clip: ``path`` to its file, read from sample ``offset`` (background-noise crops).

    ``name`` is the file's path relative to the clip folder (``yes/0a7c2a8d_nohash_0.wav``);
    ``key`` is ``<word>/<stem>`` as in the official lists (``yes/0a7c2a8d_nohash_0``), with the
    word of a test set ``_unknown_`` clip taken from its file name, ``_silence_/<stem>`` for silence
    and ``_background_noise_/<stem>#<second>`` for noise crops.
    """

    path: Path
    name: str
    key: str
    label: int
    speaker: str
    offset: int = 0


@dataclass(frozen=True)
class ClipSelection:
    """The clips of each split (ordered as the dataset's samples), the classes and a description."""

    train: tuple[Clip, ...]
    test: tuple[Clip, ...]
    classes: tuple[str, ...]
    folder: Path
    description: str


def shape(options: Options) -> DatasetShape:
    """``(features, frames)`` of a 1-s clip and the task's classes, without reading any audio."""
    return DatasetShape((options.feature_count, af.num_frames(af.CLIP_SAMPLES)), options.classes)


def load(data_root: Path, options: Options) -> Dataset:
    """The GSC dataset under ``data_root/gsc`` as features, computing or reusing the cached ones."""
    selection = select_clips(data_root, options)
    clips = selection.train + selection.test
    features = cached_features(clips, options.features, options.feature_count, data_root)
    n_train = len(selection.train)
    labels = np.array([c.label for c in clips], dtype=np.int64)
    shape = (options.feature_count, af.num_frames(af.CLIP_SAMPLES))
    train_x, test_x = features[:n_train], features[n_train:]
    scaling = ""
    if options.normalize != "none":
        if options.normalize == "minmax":
            train_x, test_x, report = minmax_scale(train_x, test_x)
        else:
            train_x, test_x, report = standard_scale(train_x, test_x, options.clip_sigmas)
        scaling = f"; {report.describe()}"
        if report.test_fraction > options.max_clipped_fraction:
            raise DataError(
                f"[data.options].normalize = {options.normalize!r}: {report.describe()}, more than "
                f"max_clipped_fraction = {options.max_clipped_fraction:g}; the scaling does not "
                "cover the test split's range (raise max_clipped_fraction or use normalize = 'none')"
            )
    return Dataset(
        name="gsc",
        train=ArraySplit(train_x, labels[:n_train]),
        test=ArraySplit(test_x, labels[n_train:]),
        classes=selection.classes,
        sample_shape=shape,
        source=f"{selection.description}; {options.features} {shape[0]}x{shape[1]}{scaling}",
    )


# --- normalization ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MinMaxReport:
    """Per-channel min-max scaling: the train statistics and the values clipped into [0, 1].

    ``low``/``high`` are each feature channel's minimum and maximum over the train split (all
    clips and frames); ``*_clipped`` count the values outside [0, 1] after scaling (0 for train by
    construction), ``*_values`` all values; ``test_excess`` is the largest distance a test value
    lay outside [0, 1] before clipping (0.0 when none).
    """

    low: np.ndarray
    high: np.ndarray
    train_clipped: int
    train_values: int
    test_clipped: int
    test_values: int
    test_excess: float
    #: how ``low``/``high`` were chosen, for :meth:`describe`
    method: str = "minmax per feature channel from the train split"

    @property
    def test_fraction(self) -> float:
        """The share of test values that were clipped."""
        return self.test_clipped / self.test_values if self.test_values else 0.0

    def describe(self) -> str:
        text = (
            f"{self.method} (train: {self.train_clipped} of {self.train_values} values clipped); "
            f"test: {self.test_clipped} of {self.test_values} values ({100 * self.test_fraction:.3f}%) "
            "clipped into [0, 1]"
        )
        if self.test_clipped:
            text += f", at most {self.test_excess:.3g} outside"
        return text


def minmax_scale(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray, MinMaxReport]:
    """Scale ``[N, features, frames]`` arrays per feature channel into [0, 1] with train statistics.

    ``x' = (x - min_c) / (max_c - min_c)`` with ``min_c``/``max_c`` over all train clips and frames
    of channel ``c``, computed in float64 and returned as ``float32``; values outside [0, 1] (only
    test values can be) are clipped and counted in the report. Raises :class:`DataError` when the
    train split is empty or a channel is constant over it.
    """
    _, low, high = _train_channels(train, "[data.options].normalize = 'minmax'")
    return _scale_into_unit(train, test, low, high, "minmax per feature channel from the train split")


def standard_scale(
    train: np.ndarray, test: np.ndarray, sigmas: float
) -> tuple[np.ndarray, np.ndarray, MinMaxReport]:
    """Map each feature channel's train mean +- ``sigmas`` standard deviations onto [0, 1].

    Min-max scaling spends most of the 8-bit input range on a few extreme values (MFCCs: a channel's
    standard deviation is then 0.06 to 0.2 of [0, 1]); this scaling gives it ``1 / (2 * sigmas)``.
    Values beyond the band, in either split, are clipped and counted in the report. Raises
    :class:`DataError` when the train split is empty or a channel is constant over it.
    """
    values, _, _ = _train_channels(train, f"[data.options].normalize = 'standard' (clip_sigmas = {sigmas:g})")
    mean, std = values.mean(axis=(0, 2)), values.std(axis=(0, 2))
    method = f"mean +- {sigmas:g} standard deviations per feature channel (train split) onto [0, 1]"
    return _scale_into_unit(train, test, mean - sigmas * std, mean + sigmas * std, method)


def _train_channels(train: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The train split as float64 and each channel's minimum and maximum; a :class:`DataError`
    starting with ``what`` when the split is empty or a channel is constant over it (no scaling)."""
    if len(train) == 0:
        raise DataError(f"{what}: the train split is empty (no statistics)")
    values = np.asarray(train, dtype=np.float64)
    low, high = values.min(axis=(0, 2)), values.max(axis=(0, 2))
    flat = np.flatnonzero(high <= low)
    if len(flat):
        raise DataError(
            f"{what}: feature channel {int(flat[0])} is constant ({low[flat[0]]:g}) over the train split; "
            "its scaling is undefined (use normalize = 'none')"
        )
    return values, low, high


def _scale_into_unit(
    train: np.ndarray, test: np.ndarray, low: np.ndarray, high: np.ndarray, method: str
) -> tuple[np.ndarray, np.ndarray, MinMaxReport]:
    """``(x - low_c) / (high_c - low_c)`` per channel in float64, clipped into [0, 1] (counted),
    returned as ``float32``."""

    def scale(x: np.ndarray) -> tuple[np.ndarray, int, float]:
        scaled = (np.asarray(x, dtype=np.float64) - low[:, None]) / (high - low)[:, None]
        outside = (scaled < 0) | (scaled > 1)
        excess = float(np.max(np.maximum(-scaled, scaled - 1), initial=0.0))
        return np.clip(scaled, 0.0, 1.0).astype(np.float32), int(outside.sum()), max(excess, 0.0)

    train_x, train_clipped, _ = scale(train)
    test_x, test_clipped, test_excess = scale(test)
    report = MinMaxReport(
        low, high, train_clipped, train_x.size, test_clipped, test_x.size, test_excess, method
    )
    return train_x, test_x, report


# --- choosing the clips -------------------------------------------------------------------------


def select_clips(data_root: Path, options: Options) -> ClipSelection:
    """Find the clip folder (see the search order), list the task's clips and split them."""
    gsc_root = Path(data_root) / "gsc"
    if not gsc_root.is_dir():
        raise DataError(f"{gsc_root}: folder not found; {_LAYOUT}")
    folder, class_dirs = _find_folder(gsc_root, Path(data_root), options.task)
    clips = _list_clips(class_dirs, options.task)
    train, test, how = _split(clips, folder, gsc_root, options)
    train = _limit(train, options.limit_train, options.seed, 0)
    test = _limit(test, options.limit_test, options.seed, 1)
    kind = "12-class test set" if UNKNOWN in class_dirs else "words folder"
    note = ""
    if options.task == "12class" and not any(c.label == 0 for c in clips):
        note = f" (no {SILENCE} clips: the folder has no {SILENCE}/ or {NOISE}/)"
    description = (
        f"gsc {options.task} from {folder} ({kind}, {len(clips)} clips{note}); {how}; "
        f"{len(train)} train / {len(test)} test"
    )
    return ClipSelection(tuple(train), tuple(test), options.classes, folder, description)


def _find_folder(gsc_root: Path, data_root: Path, task: str) -> tuple[Path, dict[str, Path]]:
    rejected: list[str] = []
    for folder, class_dirs in _candidates(gsc_root, data_root):
        missing = [w for w in _required_words(task) if w not in _words(class_dirs)]
        if not missing:
            return folder, class_dirs
        rejected.append(f"{folder} lacks {len(missing)} word(s): {', '.join(missing)}")
    looked = "; ".join(rejected) if rejected else "no folder of class folders or known archive found"
    raise DataError(f"{gsc_root}: no clip folder for task {task!r} ({looked}); {_LAYOUT}")


def _candidates(gsc_root: Path, data_root: Path) -> Iterator[tuple[Path, dict[str, Path]]]:
    """Clip folders in search order; archives are unpacked only when reached."""
    yield from _folders_within(gsc_root)
    for name in ARCHIVES:
        archive = gsc_root / name
        if archive.is_file():
            yield from _folders_within(unpacked(archive, data_root))


def _folders_within(top: Path) -> list[tuple[Path, dict[str, Path]]]:
    """``top`` and its sub-folders that hold class folders; words folders first."""
    found = []
    for folder in [top, *sorted(p for p in top.iterdir() if p.is_dir() and not p.name.startswith("."))]:
        class_dirs = _class_dirs(folder)
        if class_dirs:
            found.append((folder, class_dirs))
    return sorted(found, key=lambda item: UNKNOWN in item[1])  # stable: name order kept


def _class_dirs(folder: Path) -> dict[str, Path]:
    """Sub-folders of ``folder`` that directly hold audio files, by name."""
    out = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_dir() and not entry.name.startswith(".") and _has_audio(Path(entry.path)):
            out[entry.name] = Path(entry.path)
    return out


def _has_audio(folder: Path) -> bool:
    return any(e.is_file() and e.name.lower().endswith(AUDIO_SUFFIXES) for e in os.scandir(folder))


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(AUDIO_SUFFIXES))


def _required_words(task: str) -> tuple[str, ...]:
    return COMMANDS if task == "12class" else CLASSES_35


def _words(class_dirs: dict[str, Path]) -> set[str]:
    """The spoken words a clip folder has (test set ``_unknown_`` words from file-name prefixes)."""
    words = {name for name in class_dirs if not name.startswith("_")}
    if UNKNOWN in class_dirs:
        words |= {_unknown_word(p.name) for p in _audio_files(class_dirs[UNKNOWN])}
    return words


def _list_clips(class_dirs: dict[str, Path], task: str) -> list[Clip]:
    classes = CLASSES_12 if task == "12class" else CLASSES_35
    testset = UNKNOWN in class_dirs
    clips: list[Clip] = []
    for name, folder in class_dirs.items():
        if name == NOISE:
            if task == "12class":
                clips += _noise_crops(folder, classes.index(SILENCE))
            continue
        for path in _audio_files(folder):
            word = _unknown_word(path.name) if name == UNKNOWN else name
            label = _label(name, word, task, testset)
            if label is not None:
                stem = _speaker_part(path.name) if name == UNKNOWN else _stem(path.name)
                key = f"{word}/{stem}"
                clips.append(Clip(path, f"{name}/{path.name}", key, classes.index(label), speaker_id(key)))
    return clips


def _label(folder: str, word: str, task: str, testset: bool) -> str | None:
    """The class of a clip in class folder ``folder`` saying ``word``, or None to leave it out."""
    if task == "35class":
        return word if word in CLASSES_35 else None
    if testset:
        return folder if folder in CLASSES_12 else None
    if folder in COMMANDS or folder == SILENCE:
        return folder
    return None if folder.startswith("_") else UNKNOWN


def _noise_crops(folder: Path, label: int) -> list[Clip]:
    """Every whole second of each background-noise recording, as silence clips."""
    clips = []
    for path in _audio_files(folder):
        info = _info(path)
        _check_format(path, info.samplerate, info.channels)
        for second in range(info.frames // af.CLIP_SAMPLES):
            key = f"{NOISE}/{_stem(path.name)}#{second}"
            clips.append(Clip(path, f"{NOISE}/{path.name}", key, label, key, second * af.CLIP_SAMPLES))
    return clips


def _stem(file_name: str) -> str:
    """The file name without its audio suffixes (``abc_nohash_0.wav.flac`` -> ``abc_nohash_0``)."""
    stem = file_name
    while stem.lower().endswith(AUDIO_SUFFIXES):
        stem = stem.rsplit(".", 1)[0]
    return stem


def _unknown_word(file_name: str) -> str:
    """The word of a test set ``_unknown_`` clip: ``backward_0c540988_nohash_0.wav.flac`` -> backward."""
    stem = _stem(file_name)
    if NOHASH not in stem or "_" not in stem.split(NOHASH)[0]:
        return UNKNOWN
    return stem.split(NOHASH)[0].rsplit("_", 1)[0]


def _speaker_part(file_name: str) -> str:
    """A test set ``_unknown_`` clip's stem without its word.

    ``backward_0c540988_nohash_0.wav.flac`` -> ``0c540988_nohash_0``.
    """
    stem = _stem(file_name)
    word = _unknown_word(file_name)
    return stem[len(word) + 1 :] if word != UNKNOWN else stem


def speaker_id(key: str) -> str:
    """The speaker of clip ``key``: the last ``_``-separated token before ``_nohash_``, else the key.

    ``yes/0a7c2a8d_nohash_0`` -> ``0a7c2a8d``; ``_silence_/1024`` -> ``_silence_/1024``.
    """
    stem = key.rsplit("/", 1)[-1]
    if NOHASH not in stem:
        return key
    return stem.split(NOHASH)[0].rsplit("_", 1)[-1]


def speaker_fraction(speaker: str) -> float:
    """``sha1(speaker)`` as a number in [0, 1): the speaker is test when it is below ``test_fraction``."""
    return int(hashlib.sha1(speaker.encode()).hexdigest()[:15], 16) / 16**15


# --- splitting ----------------------------------------------------------------------------------


def _split(
    clips: list[Clip], folder: Path, gsc_root: Path, options: Options
) -> tuple[list[Clip], list[Clip], str]:
    """Train clips, test clips (each ordered by label, then key) and a description of the rule."""
    how = f"speaker-disjoint split (sha1 of speaker id < {options.test_fraction} -> test)"
    testing: set[str] | None = None
    if options.split != "speaker":
        testing, note = _official_lists(clips, folder, gsc_root)
        if testing is not None:
            how = f"official split ({note}; clips without a speaker by the speaker rule)"
        elif options.split == "official":
            raise DataError(f"split = 'official': {note}; use split = 'speaker' or 'auto'")
        else:
            how = f"{how}; {note}"

    def is_test(clip: Clip) -> bool:
        if testing is not None and NOHASH in clip.key:
            return clip.key in testing
        return speaker_fraction(clip.speaker) < options.test_fraction

    flags = [is_test(c) for c in clips]
    test = [c for c, flag in zip(clips, flags, strict=True) if flag]
    train = [c for c, flag in zip(clips, flags, strict=True) if not flag]
    return sorted(train, key=_order), sorted(test, key=_order), how


def _order(clip: Clip) -> tuple[int, str]:
    return clip.label, clip.key


def _official_lists(clips: list[Clip], folder: Path, gsc_root: Path) -> tuple[set[str] | None, str]:
    """The keys of ``testing_list.txt`` if lists are found and cover the clips, with a note why."""
    places = (folder, gsc_root, gsc_root / "lists_v0.02")
    where = next((p for p in places if (p / "testing_list.txt").is_file()), None)
    if where is None:
        return None, f"no testing_list.txt in {', '.join(str(p) for p in places)}"
    testing = _read_list(where / "testing_list.txt")
    validation = (
        _read_list(where / "validation_list.txt") if (where / "validation_list.txt").is_file() else set()
    )
    listed = testing | validation
    missing = listed - {c.key for c in clips}
    if missing:
        example = sorted(missing)[0]
        return None, (
            f"the official lists in {where} name {len(listed)} clips, {len(missing)} of them "
            f"(e.g. {example}) not in {folder}: they belong to the full data set"
        )
    return testing, f"{where}/testing_list.txt -> test, all other clips -> train"


def _read_list(path: Path) -> set[str]:
    """Keys (``word/stem``) of an official list file of paths like ``yes/0a7c2a8d_nohash_0.wav``."""
    try:
        lines = path.read_text().split()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read split list ({exc})") from None
    keys = set()
    for line in lines:
        word, _, file_name = line.strip().rpartition("/")
        if not word:
            raise DataError(f"{path}: line {line!r} is not a <word>/<file> path")
        keys.add(f"{word}/{_stem(file_name)}")
    return keys


def _limit(clips: list[Clip], limit: int | None, seed: int, stream: int) -> list[Clip]:
    """A random subset of ``limit`` clips (order kept), drawn with ``seed``; all if ``limit`` is None."""
    if limit is None or limit >= len(clips):
        return clips
    keep = np.random.default_rng([seed, stream]).choice(len(clips), size=limit, replace=False)
    return [clips[i] for i in sorted(keep)]


# --- audio --------------------------------------------------------------------------------------


def read_clip(path: Path, offset: int = 0) -> np.ndarray:
    """One clip as ``float32`` ``[16000]`` in [-1, 1], from sample ``offset``, zero-padded at the end.

    Raises :class:`DataError` naming the file when it cannot be decoded or is not 16 kHz mono.
    """
    try:
        with soundfile.SoundFile(path) as f:
            _check_format(path, f.samplerate, f.channels)
            if offset:
                f.seek(offset)
            audio = f.read(frames=af.CLIP_SAMPLES, dtype="float32", always_2d=True)[:, 0]
    except (RuntimeError, OSError, ValueError, TypeError) as exc:  # LibsndfileError is a RuntimeError
        raise DataError(
            f"{path}: cannot decode audio ({exc}); expected a 16 kHz mono WAV or FLAC file"
        ) from None
    if len(audio) == 0:
        raise DataError(f"{path}: no audio samples; expected a 1-s 16 kHz mono clip")
    return np.pad(audio, (0, af.CLIP_SAMPLES - len(audio)))


def read_clips(clips: Sequence[Clip]) -> np.ndarray:
    """The clips' audio, ``float32`` ``[len(clips), 16000]`` (decoded by a few threads)."""
    out = np.empty((len(clips), af.CLIP_SAMPLES), dtype=np.float32)
    workers = min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, audio in enumerate(pool.map(lambda c: read_clip(c.path, c.offset), clips)):
            out[i] = audio
    return out


def _info(path: Path) -> Any:
    """``soundfile.info`` of ``path`` (sample rate, channels, frames)."""
    try:
        return soundfile.info(str(path))
    except (RuntimeError, OSError, ValueError, TypeError) as exc:
        raise DataError(
            f"{path}: cannot decode audio ({exc}); expected a 16 kHz mono WAV or FLAC file"
        ) from None


def _check_format(path: Path, sample_rate: int, channels: int) -> None:
    if sample_rate != af.SAMPLE_RATE:
        raise DataError(f"{path}: sample rate {sample_rate} Hz; expected {af.SAMPLE_RATE} Hz mono")
    if channels != 1:
        raise DataError(f"{path}: {channels} channels; expected mono ({af.SAMPLE_RATE} Hz, 1 channel)")


# --- feature cache ------------------------------------------------------------------------------


def cached_features(clips: Sequence[Clip], kind: str, num_features: int, data_root: Path) -> np.ndarray:
    """Features of ``clips`` in order, ``float32`` ``[len(clips), num_features, 49]``, memory-mapped.

    Loaded from the cache when present, else computed (progress bar on a terminal) and cached.
    """
    frames = af.num_frames(af.CLIP_SAMPLES)
    if not clips:
        return np.zeros((0, num_features, frames), dtype=np.float32)
    folder = cache_dir(Path(data_root)) / "gsc-features"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{cache_key(clips, kind, num_features)}.npy"
    expected = (len(clips), num_features, frames)
    if path.is_file():
        try:
            cached = np.load(path, mmap_mode="r")
            if cached.shape == expected and cached.dtype == np.float32:
                return cached
        except (ValueError, OSError):
            pass  # a damaged cache file: compute again
    _compute(path, clips, kind, num_features)
    return np.load(path, mmap_mode="r")


def cache_key(clips: Sequence[Clip], kind: str, num_features: int) -> str:
    """A hash of the ordered clip list (name, offset, size, mtime), the feature settings and versions."""
    entries = []
    for clip in clips:
        stat = clip.path.stat()
        entries.append([clip.name, clip.offset, stat.st_size, stat.st_mtime_ns])
    material = {
        "loader_version": LOADER_VERSION,
        "features": af.feature_settings(kind, num_features),
        "clips": entries,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


def _compute(path: Path, clips: Sequence[Clip], kind: str, num_features: int) -> None:
    """Compute the features chunk by chunk into a temporary .npy, then rename it to ``path``."""
    shape = (len(clips), num_features, af.num_frames(af.CLIP_SAMPLES))
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".npy.tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        starts = range(0, len(clips), CHUNK_CLIPS)
        bar = tqdm(total=len(clips), desc="gsc features", unit="clip", disable=None)
        # decode the next chunk while the front end transforms this one (both release the GIL)
        with bar, ThreadPoolExecutor(max_workers=1) as reader:
            pending = reader.submit(read_clips, clips[:CHUNK_CLIPS])
            for start in starts:
                audio = pending.result()
                if start + CHUNK_CLIPS < len(clips):
                    pending = reader.submit(read_clips, clips[start + CHUNK_CLIPS : start + 2 * CHUNK_CLIPS])
                out[start : start + len(audio)] = af.compute_features(audio, kind, num_features)
                bar.update(len(audio))
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
