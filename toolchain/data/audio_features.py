"""Keyword-spotting audio front end: log-mel spectrograms and MFCCs of 1-s, 16 kHz clips.

Pure, vectorized numpy/scipy functions on float audio shaped ``[clips, samples]`` (values in
[-1, 1]) that return ``float32`` features shaped ``[clips, features, frames]``.

Settings (the TensorFlow speech-commands / "Hello Edge" KWS front end, with librosa's mel scale):

- frames: 30 ms windows (480 samples) every 20 ms (320 samples), no centre padding, so a
  16,000-sample clip gives ``1 + (16000 - 480) // 320 = 49`` frames; frame ``t`` covers samples
  ``[320 t, 320 t + 480)``;
- window: periodic Hann of 480 samples; each windowed frame is zero-padded at its end to
  ``n_fft = 512`` and transformed with a real FFT (257 bins, 31.25 Hz apart);
- power spectrum ``|X|^2`` (no scaling by the window or the FFT size);
- mel filterbank: 40 triangular filters between 20 Hz and 4,000 Hz (the band of TensorFlow's
  ``audio_ops.mfcc`` used by the speech-commands example) on the Slaney mel scale (linear below
  1 kHz, logarithmic above), each filter normalised to unit area (``norm='slaney'``), built as
  ``librosa.filters.mel(sr=16000, n_fft=512, n_mels=40, fmin=20, fmax=4000, htk=False,
  norm='slaney')``;
- log-mel: decibels, ``10 log10(max(mel, 1e-10))`` (librosa's ``power_to_db`` with ``ref=1``,
  ``amin=1e-10``, ``top_db=None``), so digital silence is -100 dB;
- MFCC: the first ``num_coeffs`` (default 10) coefficients of the orthonormal DCT-II of the
  40-band log-mel over the band axis.

Agreement with librosa 0.11.0 (float64 reference, 24 clips of the v0.02 12-class test set, the
first two of each class folder): the filterbank equals ``librosa.filters.mel`` exactly (max abs
difference 0.0; the largest weight is 0.0173); log-mel matches
``power_to_db(melspectrogram(..., center=False), amin=1e-10, top_db=None)`` to 4.1e-6 dB (values
span -100..+24 dB) and MFCC matches ``librosa.feature.mfcc(S=that, n_mfcc=10, norm='ortho')`` to
3.0e-5 (coefficients up to 632 in magnitude); both are float32 rounding of the output, since the
spectra are computed in float64. librosa's frames are ``n_fft`` samples long with the window centred
in them, so the reference is computed on the clip padded by 16 zeros at each end, which puts its
window over exactly our 480 samples.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

#: bump when the features computed from the same audio and settings change (invalidates caches)
FEATURE_VERSION = 1

SAMPLE_RATE = 16_000  # Hz
CLIP_SAMPLES = 16_000  # one second
WIN_LENGTH = 480  # samples (30 ms)
HOP_LENGTH = 320  # samples (20 ms)
N_FFT = 512
FMIN = 20.0  # Hz
FMAX = 4_000.0  # Hz
NUM_MELS = 40
NUM_MFCC = 10
AMIN = 1e-10  # power floor before the logarithm
#: clips per FFT batch: about 6 MB of float64 frames, small enough to be reused by the allocator
BATCH_CLIPS = 32

# Slaney mel scale: linear (3 mels per 200 Hz) below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1_000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP  # 15.0
_LOGSTEP = np.log(6.4) / 27.0


def num_frames(num_samples: int, win_length: int = WIN_LENGTH, hop_length: int = HOP_LENGTH) -> int:
    """Frames in a clip of ``num_samples`` without centre padding: ``1 + (samples - win) // hop``."""
    if num_samples < win_length:
        raise ValueError(f"a clip of {num_samples} samples is shorter than one {win_length}-sample window")
    return 1 + (num_samples - win_length) // hop_length


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Frequencies in Hz to the Slaney mel scale (``librosa.hz_to_mel(htk=False)``); 1 kHz is 15 mel."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _F_SP
    log = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(hz >= _MIN_LOG_HZ, log, linear)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """The inverse of :func:`hz_to_mel`: Slaney mels to Hz."""
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _F_SP
    log = _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(mel, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, log, linear)


def mel_filterbank(
    num_mels: int = NUM_MELS,
    sample_rate: int = SAMPLE_RATE,
    n_fft: int = N_FFT,
    fmin: float = FMIN,
    fmax: float = FMAX,
) -> np.ndarray:
    """Triangular, unit-area mel filters, ``float64`` shaped ``[num_mels, n_fft // 2 + 1]``.

    Filter ``i`` rises linearly (in Hz) from 0 at edge ``i`` to its peak at edge ``i + 1`` and falls
    to 0 at edge ``i + 2``, where the ``num_mels + 2`` edges are evenly spaced in Slaney mels from
    ``fmin`` to ``fmax``; it is scaled by ``2 / (edge[i + 2] - edge[i])`` (Hz) so every filter has
    the same area. Raises ``ValueError`` if a filter would cover no FFT bin (too many bands).
    """
    if num_mels < 1:
        raise ValueError(f"num_mels must be positive, got {num_mels}")
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= {sample_rate / 2} Hz, got {fmin}..{fmax}")
    bin_hz = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), num_mels + 2))
    widths = np.diff(edges)
    offsets = edges[:, None] - bin_hz[None, :]  # [num_mels + 2, bins]
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    empty = np.flatnonzero(weights.max(axis=1) <= 0)
    if len(empty):
        raise ValueError(
            f"{num_mels} mel bands between {fmin} and {fmax} Hz leave {len(empty)} filter(s) with no FFT "
            f"bin (n_fft={n_fft}); use fewer bands"
        )
    return weights


def dct_matrix(num_coeffs: int, size: int) -> np.ndarray:
    """The first ``num_coeffs`` rows of the orthonormal DCT-II of length ``size``, ``[num_coeffs, size]``.

    ``D[k, n] = s_k cos(pi k (2n + 1) / (2 size))`` with ``s_0 = sqrt(1 / size)`` and
    ``s_k = sqrt(2 / size)`` otherwise (``scipy.fft.dct(type=2, norm='ortho')``).
    """
    if not 1 <= num_coeffs <= size:
        raise ValueError(f"need 1 <= num_coeffs <= {size}, got {num_coeffs}")
    k = np.arange(num_coeffs)[:, None]
    n = np.arange(size)[None, :]
    matrix = np.cos(np.pi * k * (2 * n + 1) / (2 * size)) * np.sqrt(2.0 / size)
    matrix[0] *= np.sqrt(0.5)
    return matrix


def power_spectrogram(audio: np.ndarray) -> np.ndarray:
    """``|rfft(hann * frame, 512)|^2`` of every 480-sample frame, ``float64`` ``[clips, 257, frames]``.

    ``audio`` is ``[clips, samples]`` (float, any length of at least 480 samples). Computed in
    float64: in float32 the quietest frames (-90 dB) lose about 2e-3 dB to rounding.
    """
    audio = _as_clips(audio)
    frames = np.lib.stride_tricks.sliding_window_view(audio, WIN_LENGTH, axis=-1)[:, ::HOP_LENGTH]
    # [clips, frames, bins]
    spectrum = scipy.fft.rfft(frames * _hann(WIN_LENGTH), n=N_FFT, axis=-1, workers=-1)
    power = spectrum.real**2 + spectrum.imag**2
    return power.transpose(0, 2, 1)


def log_mel_spectrogram(audio: np.ndarray, num_mels: int = NUM_MELS) -> np.ndarray:
    """Log-mel energies in dB, ``float32`` ``[clips, num_mels, frames]`` (49 frames for 1-s clips).

    ``10 log10(max(mel_filterbank @ power_spectrogram, 1e-10))``; see the module docstring.
    """
    return _log_mel(audio, num_mels).astype(np.float32)


def _log_mel(audio: np.ndarray, num_mels: int) -> np.ndarray:
    """:func:`log_mel_spectrogram` in float64, computed in batches of :data:`BATCH_CLIPS` clips."""
    audio = _as_clips(audio)
    filters = mel_filterbank(num_mels)
    out = np.empty((len(audio), num_mels, num_frames(audio.shape[1])), dtype=np.float64)
    for start in range(0, len(audio), BATCH_CLIPS):
        power = power_spectrogram(audio[start : start + BATCH_CLIPS])
        mel = np.matmul(filters, power)  # [batch, num_mels, frames]
        out[start : start + BATCH_CLIPS] = 10.0 * np.log10(np.maximum(mel, AMIN))
    return out


def mfcc(audio: np.ndarray, num_coeffs: int = NUM_MFCC, num_mels: int = NUM_MELS) -> np.ndarray:
    """MFCCs, ``float32`` ``[clips, num_coeffs, frames]``: orthonormal DCT-II of the dB log-mel."""
    dct = dct_matrix(num_coeffs, num_mels)
    return np.matmul(dct, _log_mel(audio, num_mels)).astype(np.float32)


def compute_features(audio: np.ndarray, kind: str, num_features: int) -> np.ndarray:
    """``mfcc(audio, num_features)`` or ``log_mel_spectrogram(audio, num_features)``.

    Returns ``float32`` ``[clips, num_features, frames]``.
    """
    if kind == "mfcc":
        return mfcc(audio, num_features)
    if kind == "logmel":
        return log_mel_spectrogram(audio, num_features)
    raise ValueError(f"unknown feature kind {kind!r}; expected 'mfcc' or 'logmel'")


def feature_settings(kind: str, num_features: int) -> dict[str, object]:
    """Every setting that determines the features (for cache keys and reports)."""
    return {
        "version": FEATURE_VERSION,
        "kind": kind,
        "num_features": num_features,
        "num_mels": NUM_MELS if kind == "mfcc" else num_features,
        "sample_rate": SAMPLE_RATE,
        "win_length": WIN_LENGTH,
        "hop_length": HOP_LENGTH,
        "n_fft": N_FFT,
        "window": "hann-periodic",
        "fmin": FMIN,
        "fmax": FMAX,
        "mel_scale": "slaney",
        "mel_norm": "slaney",
        "log": "10log10(max(x,1e-10))",
        "dct": "II-ortho",
    }


def _hann(length: int) -> np.ndarray:
    """Periodic Hann window (``scipy.signal.get_window('hann', length)``)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


def _as_clips(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2:
        raise ValueError(f"audio must be shaped [clips, samples], got shape {audio.shape}")
    num_frames(audio.shape[1])  # checks the length
    return audio
