// Alarm sounds after IEC 60601-1-8 burst patterns, made with Web Audio (no sound files).
//   high:   10 pulses (3 + 2, pause, 3 + 2), a burst every 3 s
//   medium: 3 pulses, a burst every 4 s
//   low:    1 pulse, every 8 s (UL 1069: repeated at least every 10 s while the call stands)
// Fundamentals within 150–1000 Hz; a square wave through a low-pass keeps a few harmonics,
// which makes the sound easier to locate.

const PATTERNS = {
  high: { freq: 660, len: 0.08, every: 3.0, pulses: [0, 0.15, 0.30, 0.60, 0.75, 1.25, 1.40, 1.55, 1.85, 2.00] },
  medium: { freq: 523, len: 0.16, every: 4.0, pulses: [0, 0.30, 0.60] },
  low: { freq: 440, len: 0.25, every: 8.0, pulses: [0] },
};
export const LEVELS = ["low", "medium", "high"];

export class Sounder {
  constructor() {
    this.ctx = null;
    this.level = null;        // what should sound now: null | "low" | "medium" | "high"
    this.timer = null;
    this.bursts = 0;          // bursts actually started (for the status line and tests)
    this.onchange = () => {};
    this.onburst = () => {};  // each burst's moment, even while audio is blocked (the pocket console vibrates)
  }

  context() {
    if (!this.ctx) {
      const AC = window.AudioContext || window.webkitAudioContext;
      if (!AC) return null;
      this.ctx = new AC();
      this.ctx.addEventListener("statechange", () => this.onchange());
    }
    return this.ctx;
  }

  /** True when the browser keeps audio suspended until the user touches the page. */
  get blocked() {
    const ctx = this.context();
    return !ctx || ctx.state !== "running";
  }

  unlock() {
    const ctx = this.context();
    if (ctx && ctx.state !== "running") ctx.resume().catch(() => {});
  }

  set(level) {
    if (level === this.level) return;
    this.level = level;
    clearTimeout(this.timer);
    this.timer = null;
    if (level) this.loop();
  }

  loop() {
    if (!this.level) return;
    this.onburst(this.level);
    this.burst(this.level);
    this.timer = setTimeout(() => this.loop(), PATTERNS[this.level].every * 1000);
  }

  burst(level) {
    const ctx = this.context();
    if (!ctx || ctx.state !== "running") return;
    const p = PATTERNS[level];
    const t0 = ctx.currentTime + 0.02;
    const filter = ctx.createBiquadFilter();
    filter.type = "lowpass";
    filter.frequency.value = 3000;
    filter.connect(ctx.destination);
    for (const at of p.pulses) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = "square";
      osc.frequency.value = p.freq;
      const start = t0 + at, end = start + p.len;
      gain.gain.setValueAtTime(0, start);
      gain.gain.linearRampToValueAtTime(0.25, start + 0.01);     // 10 ms rise, no clicks
      gain.gain.setValueAtTime(0.25, end - 0.012);
      gain.gain.linearRampToValueAtTime(0, end);
      osc.connect(gain).connect(filter);
      osc.start(start);
      osc.stop(end + 0.01);
    }
    this.bursts += 1;
    this.onchange();
  }
}
