// Dev-only reference for tests/unit/test_faceapi.py: runs the ORIGINAL face-api expression net
// (@vladmandic/face-api 1.7.15 on @tensorflow/tfjs 4.22.0, CPU backend) on RGB crops and prints
// its probabilities. Needs Node >= 18 and, in some directory DIR outside the repo:
//   npm install @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0 @vladmandic/face-api@1.7.15
// Called by tests/tools/record_faceapi_parity.py with NODE_PATH=DIR/node_modules; never at scoring time.
//
// usage: node faceapi_reference.cjs IN.json OUT.json
//   IN.json:  {"crops": [{"shape": [h, w, 3], "data": [uint8 ...]}, ...]}
//   OUT.json: {"labels": [...], "probs": [[7 floats], ...], "versions": {...}}
const fs = require('fs');
const path = require('path');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

async function main() {
  const [inPath, outPath] = process.argv.slice(2);
  const tf = faceapi.tf;
  await tf.setBackend('cpu');
  await tf.ready();
  const modelDir = path.join(path.dirname(require.resolve('@vladmandic/face-api/package.json')), 'model');
  const manifest = JSON.parse(fs.readFileSync(path.join(modelDir, 'face_expression_model-weights_manifest.json')));
  const buf = fs.readFileSync(path.join(modelDir, 'face_expression_model.bin'));
  const weightMap = tf.io.decodeWeights(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength), manifest[0].weights);
  faceapi.nets.faceExpressionNet.loadFromWeightMap(weightMap);
  const { crops } = JSON.parse(fs.readFileSync(inPath));
  const probs = [];
  for (const c of crops) {
    // predictExpressions does face-api's own input handling: pad to a centred square, resize to 112
    const t = tf.tensor3d(Int32Array.from(c.data), c.shape, 'int32');
    const e = await faceapi.nets.faceExpressionNet.predictExpressions(t);
    probs.push(faceapi.FACE_EXPRESSION_LABELS.map((k) => e[k]));
    t.dispose();
  }
  const versions = { faceapi: faceapi.version, tfjs: tf.version.tfjs, backend: tf.getBackend(), node: process.version };
  fs.writeFileSync(outPath, JSON.stringify({ labels: faceapi.FACE_EXPRESSION_LABELS, probs, versions }));
}

main().catch((err) => { console.error(err); process.exit(1); });
