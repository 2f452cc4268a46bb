// The voice-search page: record from the microphone (an AudioWorklet collects the samples),
// draw the waveform while recording, encode 16 kHz mono 16-bit WAV, POST it to /transcribe
// with the consent checkbox's value, and show the answer or the refusal in words.
"use strict";

const TARGET_RATE = 16000; // what the recogniser hears (models/audio.py: SAMPLE_RATE)

// what to tell a person for each ErrorBody code (the service's own message follows it)
const ADVICE = {
  empty_upload: "The recording was empty.",
  upload_too_large: "The upload is too large.",
  undecodable_audio: "That file is not audio the service can read (send WAV, FLAC or OGG).",
  audio_too_long: "The query is too long: keep it to a few seconds.",
  audio_too_short: "The query is too short: hold Record a little longer.",
  non_finite_samples: "The audio holds invalid samples.",
  bad_sample_rate: "The audio's sample rate is not supported.",
  bad_channels: "The audio's channel layout is not supported.",
  bad_client_json: "The page sent malformed client details.",
  overloaded: "The service is busy right now: try again in a moment.",
  not_ready: "The service has no model loaded yet: try again shortly.",
  shutting_down: "The service is restarting: try again shortly.",
  log_unavailable: "The service could not record the request: try again.",
};

const $ = (id) => document.getElementById(id);
let recording = null; // {context, stream, node, analyser, chunks, frame}

function setStatus(text) {
  $("status").textContent = text;
}

function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = false;
}

function clearOutput() {
  $("error").hidden = true;
  $("result").hidden = true;
}

function drawWaveform(analyser) {
  const canvas = $("waveform");
  const g = canvas.getContext("2d");
  const data = new Float32Array(analyser.fftSize);
  const draw = () => {
    analyser.getFloatTimeDomainData(data);
    g.fillStyle = "#10141c";
    g.fillRect(0, 0, canvas.width, canvas.height);
    g.strokeStyle = "#4fc3f7";
    g.lineWidth = 2;
    g.beginPath();
    for (let i = 0; i < data.length; i++) {
      const x = (i / (data.length - 1)) * canvas.width;
      const y = (0.5 - data[i] * 0.5) * canvas.height;
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    }
    g.stroke();
    if (recording) recording.frame = requestAnimationFrame(draw);
  };
  draw();
}

async function startRecording() {
  clearOutput();
  if (!navigator.mediaDevices || !window.AudioWorkletNode) {
    showError("This browser cannot record here (a microphone needs https or 127.0.0.1).");
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false },
    });
  } catch (err) {
    showError(`No microphone: ${err.message || err}`);
    return;
  }
  const context = new AudioContext();
  await context.audioWorklet.addModule("/ui/recorder-worklet.js");
  const source = context.createMediaStreamSource(stream);
  const analyser = context.createAnalyser();
  analyser.fftSize = 2048;
  const node = new AudioWorkletNode(context, "recorder");
  const chunks = [];
  node.port.onmessage = (event) => chunks.push(event.data);
  const mute = context.createGain();
  mute.gain.value = 0; // the worklet runs only when connected to the output; keep it silent
  source.connect(analyser);
  source.connect(node).connect(mute).connect(context.destination);
  recording = { context, stream, node, analyser, chunks, frame: 0 };
  $("record").disabled = true;
  $("stop").disabled = false;
  setStatus("Recording… press Stop when you are done.");
  drawWaveform(analyser);
}

async function stopRecording() {
  if (!recording) return;
  const { context, stream, node, chunks, frame } = recording;
  recording = null;
  cancelAnimationFrame(frame);
  node.port.onmessage = null;
  stream.getTracks().forEach((track) => track.stop());
  const rate = context.sampleRate;
  await context.close();
  $("record").disabled = false;
  $("stop").disabled = true;
  const samples = resample(concat(chunks), rate, TARGET_RATE);
  setStatus(`Recorded ${(samples.length / TARGET_RATE).toFixed(1)} s; transcribing…`);
  await send(new Blob([encodeWav(samples, TARGET_RATE)], { type: "audio/wav" }), "query.wav");
}

function concat(chunks) {
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const out = new Float32Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

// Down to 16 kHz: average over each output sample's span (a box low-pass), then pick.
function resample(samples, from, to) {
  if (from === to) return samples;
  const ratio = from / to;
  const out = new Float32Array(Math.floor(samples.length / ratio));
  for (let i = 0; i < out.length; i++) {
    const start = Math.floor(i * ratio);
    const end = Math.max(start + 1, Math.floor((i + 1) * ratio));
    let sum = 0;
    for (let j = start; j < end && j < samples.length; j++) sum += samples[j];
    out[i] = sum / (end - start);
  }
  return out;
}

function encodeWav(samples, rate) {
  const buffer = new ArrayBuffer(44 + samples.length * 2);
  const view = new DataView(buffer);
  const text = (at, s) => [...s].forEach((ch, i) => view.setUint8(at + i, ch.charCodeAt(0)));
  text(0, "RIFF");
  view.setUint32(4, 36 + samples.length * 2, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true); // PCM header size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true); // bytes per second
  view.setUint16(32, 2, true); // block align
  view.setUint16(34, 16, true); // bits per sample
  text(36, "data");
  view.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return buffer;
}

async function send(blob, name) {
  const form = new FormData();
  form.append("audio", blob, name);
  form.append("consent", $("consent").checked ? "true" : "false");
  form.append("client", JSON.stringify({ app: "voice-search-page/1", agent: navigator.userAgent }));
  let response, body;
  try {
    response = await fetch("/transcribe", { method: "POST", body: form });
    body = await response.json();
  } catch (err) {
    showError(`The service did not answer: ${err.message || err}`);
    setStatus("Failed.");
    return;
  }
  if (!response.ok) {
    const code = body.code || "error";
    const advice = ADVICE[code] || "The service refused the request.";
    const detail = body.error || body.detail || JSON.stringify(body);
    showError(`${advice} (${response.status} ${code}: ${detail})`);
    setStatus("Refused.");
    return;
  }
  $("transcript").textContent = body.transcript || "(nothing recognised)";
  $("confidence").textContent = body.confidence.toFixed(2);
  $("latency").textContent = `${body.latency_ms.toFixed(0)} ms`;
  $("model-version").textContent = body.model_version;
  $("request-id").textContent = body.request_id;
  $("result").hidden = false;
  setStatus("Done.");
}

$("record").addEventListener("click", startRecording);
$("stop").addEventListener("click", stopRecording);
$("file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  clearOutput();
  setStatus(`Sending ${file.name}…`);
  await send(file, file.name);
});
