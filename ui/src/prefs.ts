// What a person sets once and finds again: theme, terminal font size and scrollback (kept in
// this browser's localStorage).
import { useEffect, useState } from "preact/hooks";

export interface Prefs {
  theme: "dark" | "light";
  fontSize: number;
  scrollback: number;
}

const KEY = "hearth.prefs";
const DEFAULTS: Prefs = {
  theme: matchMedia("(prefers-color-scheme: light)").matches ? "light" : "dark",
  fontSize: 14,
  scrollback: 5000,
};

export const FONT_SIZES = { min: 8, max: 32 };
export const SCROLLBACK = { min: 0, max: 100000 };

function load(): Prefs {
  try {
    const p = { ...DEFAULTS, ...JSON.parse(localStorage.getItem(KEY) ?? "{}") };
    if (p.theme !== "dark" && p.theme !== "light") p.theme = DEFAULTS.theme;
    p.fontSize = clamp(Number(p.fontSize) || DEFAULTS.fontSize, FONT_SIZES.min, FONT_SIZES.max);
    p.scrollback = clamp(Number(p.scrollback) || 0, SCROLLBACK.min, SCROLLBACK.max);
    return p;
  } catch {
    return { ...DEFAULTS };
  }
}

export const clamp = (n: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, Math.round(n)));

let current = load();
const listeners = new Set<(p: Prefs) => void>();

export function prefs(): Prefs {
  return current;
}

export function setPrefs(change: Partial<Prefs>) {
  current = { ...current, ...change };
  localStorage.setItem(KEY, JSON.stringify(current));
  document.documentElement.dataset.theme = current.theme;
  listeners.forEach((f) => f(current));
}

export function usePrefs(): Prefs {
  const [p, setP] = useState(current);
  useEffect(() => {
    listeners.add(setP);
    return () => void listeners.delete(setP);
  }, []);
  return p;
}

export function onPrefs(f: (p: Prefs) => void): () => void {
  listeners.add(f);
  return () => void listeners.delete(f);
}

document.documentElement.dataset.theme = current.theme;
