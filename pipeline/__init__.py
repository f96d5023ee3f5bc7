"""The stages of the pipeline: sources -> decoding -> faces -> stacks (prepare), then train/predict."""

import os

# FFmpeg and OpenCV print per-file warnings (e.g. "moov atom not found") that the prepare report
# already records with the file's name; keep the terminal readable. Set before cv2 is imported.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
