"""Real-time streaming: PCM chunks in, timestamped lip-synced frames (and their audio) out.

``stream(avatar, chunks, options)`` reads an iterable of 16 kHz mono chunks (float32 in [-1, 1] or
int16, any size from 10 ms up) and yields a :class:`StreamFrame` for output frame ``i`` (showing
``t_i = i / fps``) as soon as audio up to ``t_i + lookahead`` has arrived. Nothing waits for the
end of the utterance; memory is bounded (audio older than the feature windows is dropped).

Incremental features (the offline front end's definitions, on trailing windows):

- log-mel: recomputed on the last ``MEL_SECONDS`` of audio, aligned to the 200-sample hop, so
  every column not touching the window edges equals the offline one;
- voice activity: Silero's LSTM stepped once per new 512-sample chunk with its state kept;
- Whisper tiny.en encoder: re-run at every processing step on the last ``whisper_window`` s of audio
  (default 3 s, about 10-15 ms a call), unpadded and minus a silent window of its length, as the
  offline front end does with its centred 6 s windows. The newest frames have only the look-ahead
  to their right, so their states still differ somewhat from the offline ones (the benchmark
  reports the resulting mouth correlation).

Motion: the shipped model reads ``receptive_field`` frames each side; each step runs it on the
new frames plus left context and whatever right context has arrived (the look-ahead), the same
``left``/``right`` chunk protocol ``pipeline.target_chunks`` uses; missing future context is
edge-replicated by the model. Silence (VAD) gates the mouth to the avatar's neutral, closed
shape while the template keeps its ping-pong idle motion.
"""

from lipdub.stream.chunks import as_float_chunk, paced_chunks  # noqa: F401
from lipdub.stream.engine import Streamer, stream  # noqa: F401
from lipdub.stream.options import StreamFrame, StreamOptions  # noqa: F401
from lipdub.stream.recorder import Recorder  # noqa: F401

__all__ = ["Recorder", "StreamFrame", "StreamOptions", "Streamer", "as_float_chunk", "paced_chunks", "stream"]
