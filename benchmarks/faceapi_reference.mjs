// The reference output of face-api.js's expression model, computed by face-api.js itself.
//
// Runs @vladmandic/face-api's own FaceExpressionNet (its graph code, dist/face-api.node-wasm.js) on the
// pure-JS @tensorflow/tfjs CPU backend (not tfjs-node, which downloads a binary). The weights are decoded by
// tfjs's own tf.io.decodeWeights (which undoes the uint8 quantisation), so nothing here is shared with our
// torch port in benchmarks/faceapi_reference.py except the input pixels.
//
//   node faceapi_reference.mjs MODEL_DIR INPUTS.json OUT.json
//
// INPUTS.json: [{"name": ..., "height": H, "width": W, "pixels": "<base64 of H*W*3 uint8 RGB>"}, ...]
// OUT.json:    {"tfjs": version, "backend": "cpu", "outputs": {name: {"logits": [7], "probs": [7]}, ...}}
// Run from a folder whose node_modules holds @tensorflow/tfjs, @tensorflow/tfjs-backend-wasm and
// @vladmandic/face-api (benchmarks/faceapi_reference.py --record sets one up with npm).
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const [modelDir, inputsPath, outPath] = process.argv.slice(2);
const require = createRequire(path.join(process.cwd(), 'package.json'));
// CommonJS builds: tfjs's ESM dist cannot be imported by Node as it is. face-api.node-wasm.js is face-api's
// build for the pure-JS tfjs package (the WASM backend is loaded, but the CPU backend is the one used).
const tf = require('@tensorflow/tfjs');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

await tf.setBackend('cpu');
await tf.ready();
const manifest = JSON.parse(fs.readFileSync(path.join(modelDir, 'face_expression_model-weights_manifest.json')));
const bin = fs.readFileSync(path.join(modelDir, 'face_expression_model.bin'));
const buffer = bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength);
const weightMap = tf.io.decodeWeights(buffer, manifest.flatMap((group) => group.weights));
const net = new faceapi.FaceExpressionNet();
net.loadFromWeightMap(weightMap);

const outputs = {};
for (const item of JSON.parse(fs.readFileSync(inputsPath))) {
  const pixels = Uint8Array.from(Buffer.from(item.pixels, 'base64'));
  const input = tf.tensor3d(pixels, [item.height, item.width, 3], 'int32');
  const netInput = await faceapi.toNetInput(input);
  const logits = net.runNet(netInput); // the 7 scores before the softmax (probabilities saturate on clear faces)
  const probs = await net.forward(input);
  outputs[item.name] = { logits: Array.from(await logits.data()), probs: Array.from(await probs.data()) };
  [logits, probs, input].forEach((t) => t.dispose());
}
fs.writeFileSync(outPath, JSON.stringify({ tfjs: tf.version.tfjs, backend: tf.getBackend(), outputs }, null, 1));
