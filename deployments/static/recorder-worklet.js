// Audio thread of the voice-search page: hands each block of microphone samples (mono,
// the AudioContext's rate) to the page, which joins them into a WAV when recording stops.
class RecorderProcessor extends AudioWorkletProcessor {
  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length > 0) {
      this.port.postMessage(channels[0].slice(0)); // the first channel; copied, the buffer is reused
    }
    return true;
  }
}
registerProcessor("recorder", RecorderProcessor);
