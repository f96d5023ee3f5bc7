"""The clip benchmark's answers: the five-label argmax and the all-class one a user reads."""

import numpy as np

from benchmarks.clip_accuracy import FACEAPI_CLASSES, LABEL_CLASSES, ClipResult, all_class_report, full_answer
from benchmarks.faceapi_reference import CLASSES as FACEAPI_ORDER

OURS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def test_full_answer_names_the_label_or_the_class_no_clip_shows() -> None:
    assert full_answer(np.array([.1, .0, .0, .0, .2, .6, .1]), OURS, LABEL_CLASSES) == "sad"
    assert full_answer(np.array([.3, .4, .0, .0, .2, .1, .0]), OURS, LABEL_CLASSES) == "disgust"
    # face-api.js spells its classes otherwise: the same answers come out
    assert full_answer(np.array([.1, .0, .0, .1, .0, .0, .8]), FACEAPI_ORDER, FACEAPI_CLASSES) == "surprise"
    assert full_answer(np.array([.1, .0, .0, .1, .0, .8, .0]), FACEAPI_ORDER, FACEAPI_CLASSES) == "disgust"
    assert full_answer(np.array([.1, .0, .0, .1, .8, .0, .0]), FACEAPI_ORDER, FACEAPI_CLASSES) == "fear"


def test_all_class_report_counts_wrong_class_answers_as_wrong() -> None:
    results = []
    for truth, ours, faceapi in (("sad", "disgust", "sad"), ("sad", "sad", "sad"), ("happy", "happy", "fear"),
                                 ("neutral", "neutral", "neutral")):
        r = ClipResult(f"{truth}.mp4", truth, ours_all=ours, faceapi_all=faceapi, fer_all=None)
        results.append(r)
    lines = all_class_report(results, "fer (every 5)")
    ours = next(line for line in lines if line.startswith("ours (mean)"))
    faceapi = next(line for line in lines if line.startswith("face-api.js"))
    assert "75.0%" in ours and "disgust 1" in ours
    assert "75.0%" in faceapi and "fear 1" in faceapi
    assert any("predates" in line for line in lines)  # fer's answers came from an old CSV
    assert lines[-1].strip().startswith("ours (mean) vs face-api.js") and "1 / 1" in lines[-1]
