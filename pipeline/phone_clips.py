"""A clip turned into what phones and browsers record, with the static FFmpeg in ``imageio-ffmpeg``.

The clips the project makes (``synthetic.make_face_clip``) are OpenCV's: 30 fps, landscape, constant
rate. Users' clips are portrait phone clips (landscape frames plus a display-matrix rotation), 60 fps
or variable-rate ones, a browser's MediaRecorder webm (no duration in the header), an iPhone's 10-bit
HEVC .mov. The tests and benchmarks make each from the same source clip, so every version shows the
same moments and must give the same answer. ``imageio-ffmpeg`` is a development requirement.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

# FFmpeg filters that store an upright picture the way a phone held at ``degrees`` does: turned
# clockwise by ``degrees``; the display matrix then tells players to turn it back (counter-clockwise).
_STORED_TURN = {90: "transpose=clock", 180: "hflip,vflip", 270: "transpose=cclock"}


def ffmpeg(*args: str) -> None:
    """Run the static FFmpeg quietly; CalledProcessError if it fails."""
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", *args], check=True)


def _h264(*extra: str) -> list[str]:
    return ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", *extra]


def h264(src: Path, dst: Path) -> Path:
    """H.264 / yuv420p mp4 (as Safari and Android record it): the reference the others are compared with."""
    ffmpeg("-i", str(src), "-an", *_h264(), str(dst))
    return Path(dst)


def rotated(src: Path, dst: Path, degrees: int) -> Path:
    """A phone clip: the picture stored turned, ``degrees`` (90/180/270) counter-clockwise in the display matrix."""
    stored = Path(dst).with_name(f".{Path(dst).stem}.stored.mp4")
    ffmpeg("-i", str(src), "-an", "-vf", _STORED_TURN[degrees], *_h264(), str(stored))
    try:
        ffmpeg("-display_rotation", str(degrees), "-i", str(stored), "-c", "copy", str(dst))
    finally:
        stored.unlink(missing_ok=True)
    return Path(dst)


def at_fps(src: Path, dst: Path, fps: int) -> Path:
    """The same moments at another constant rate (60 fps repeats each 30 fps frame)."""
    ffmpeg("-i", str(src), "-an", "-vf", f"fps={fps}", *_h264(), str(dst))
    return Path(dst)


def variable_rate(src: Path, dst: Path) -> Path:
    """A variable-frame-rate clip as a phone writes it in dim light: frames dropped irregularly (two of
    every seven, 2-3 frame gaps) and the others kept at their own presentation times."""
    keep = "select='not(eq(mod(n\\,7)\\,2)+eq(mod(n\\,7)\\,3)+eq(mod(n\\,11)\\,6))'"
    ffmpeg("-i", str(src), "-an", "-vf", keep, "-fps_mode", "vfr", *_h264(), str(dst))
    return Path(dst)


def browser_webm(src: Path, dst: Path, codec: str = "vp9") -> Path:
    """A MediaRecorder-like webm: VP8 or VP9 with an Opus track, written live (no duration, no frame count)."""
    video = {"vp8": "libvpx", "vp9": "libvpx-vp9"}[codec]
    ffmpeg("-i", str(src), "-f", "lavfi", "-i", "sine=frequency=440", "-map", "0:v", "-map", "1:a", "-shortest",
           "-c:v", video, "-b:v", "1M", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus",
           "-live", "1", "-f", "webm", str(dst))
    return Path(dst)


def iphone_hevc(src: Path, dst: Path) -> Path:
    """An iPhone-like .mov: HEVC, 10-bit 4:2:0, tagged hvc1."""
    ffmpeg("-i", str(src), "-an", "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le",
           "-tag:v", "hvc1", "-x265-params", "log-level=error", str(dst))
    return Path(dst)


def audio_only(dst: Path, seconds: float = 2.0) -> Path:
    """A file with sound and no picture (.mp4 with AAC, or .webm with Opus, by ``dst``'s extension)."""
    codec = "libopus" if Path(dst).suffix.lower() == ".webm" else "aac"
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", codec, str(dst))
    return Path(dst)
