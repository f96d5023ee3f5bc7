"""Our torch port of face-api.js's expression model against face-api.js's own output, recorded in Node."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.faceapi_reference import (
    MANIFEST,
    MODEL_DIR,
    REFERENCE,
    FaceApiError,
    FaceApiExpression,
    _sha256,
    pad_to_square,
    read_weights,
    reference_inputs,
)


@pytest.fixture(scope="module")
def faceapi() -> FaceApiExpression:
    if not (MODEL_DIR / MANIFEST).is_file():
        pytest.skip(f"face-api.js's model is not in {MODEL_DIR}: `make test` and `make bench-deps` fetch it with "
                    "`npm pack @vladmandic/face-api@1.7.15`, which failed or was not run (no npm or no registry)")
    return FaceApiExpression(MODEL_DIR)


def test_torch_port_gives_face_api_js_outputs(faceapi: FaceApiExpression) -> None:
    reference = json.loads(REFERENCE.read_text())
    inputs = reference_inputs()
    assert set(reference["outputs"]) == set(inputs)
    for name, expected in reference["outputs"].items():
        # the inputs are rebuilt here exactly as they were when face-api.js ran on them
        assert _sha256(inputs[name]) == reference["input_sha256"][name], name
        np.testing.assert_allclose(faceapi.logits([inputs[name]])[0], expected["logits"], atol=2e-4, err_msg=name)
        np.testing.assert_allclose(faceapi.probs([inputs[name]])[0], expected["probs"], atol=1e-5, err_msg=name)
    # the astronaut smiles: face-api.js and the port both say happy, on all four views of her face
    assert all(faceapi.classes[int(np.argmax(faceapi.probs([inputs[n]])[0]))] == "happy"
               for n in inputs if n.startswith("astronaut"))


def test_padding_follows_face_api_js() -> None:
    image = np.ones((85, 112, 3), dtype=np.uint8)
    padded = pad_to_square(image)
    assert padded.shape == (112, 112, 3)
    rows = padded[:, 0, 0]
    assert rows[:13].sum() == 0 and rows[13:98].all() and rows[98:].sum() == 0  # 13 rows before, 14 after


def test_missing_model_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(FaceApiError, match="run `make bench-deps`"):
        read_weights(tmp_path)
