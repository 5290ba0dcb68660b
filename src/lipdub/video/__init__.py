"""Media I/O: probe files, stream frames out of any video, encode frames (plus an audio track) to MP4.

PyAV answers questions about a file (streams, size, rotation, whether it decodes at all); the bundled
ffmpeg binary does the bulk work through pipes, so a long video is never held in memory and the
decoder/encoder run in their own process, in parallel with the Python stage feeding or reading them.

Modules: ``video.reader`` (probe, read_frames), ``video.writer`` (VideoWriter, write_video,
verify_output), ``video.ffmpeg`` (the binary and its messages); the public names are here.
"""

from lipdub.video.ffmpeg import ffmpeg_exe
from lipdub.video.reader import (DEFAULT_MAX_INPUT_BYTES, MediaInfo, frame_count, output_size, probe,
                                 read_frames)
from lipdub.video.writer import X264_PRESETS, EncodeOptions, VideoWriter, verify_output, write_video

__all__ = ["DEFAULT_MAX_INPUT_BYTES", "EncodeOptions", "MediaInfo", "VideoWriter", "X264_PRESETS",
           "ffmpeg_exe", "frame_count", "output_size", "probe", "read_frames", "verify_output",
           "write_video"]
