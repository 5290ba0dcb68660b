"""Audio front end: decoding, and per-video-frame features (Wav2Lip mel, Whisper states, VAD).

Time convention (shared with every stage): frame ``i`` at ``fps`` shows ``t_i = i / fps`` and its
audio features are centred on ``t_i``; audio of ``d`` seconds has ``n_frames_for(d, fps) =
round(d * fps)`` frames. Audio in memory is mono float32 at 16 kHz in [-1, 1].
Heavy dependencies (CTranslate2, ONNX Runtime) are imported only when a model is first used.
"""

from lipdub.audio.features import FEATURES_VERSION, AudioFeatures, extract_features
from lipdub.audio.io import load_audio
from lipdub.audio.mel import MEL_FPS, log_mel, mel_windows
from lipdub.audio.timing import SAMPLE_RATE, frame_times, n_frames_for
from lipdub.audio.vad import speech_mask, voice_activity
from lipdub.audio.whisper import WhisperEncoder

__all__ = [
    "AudioFeatures", "FEATURES_VERSION", "MEL_FPS", "SAMPLE_RATE", "WhisperEncoder",
    "extract_features", "frame_times", "load_audio", "log_mel", "mel_windows", "n_frames_for",
    "speech_mask", "voice_activity",
]
