// Paths in the address bar: "/" (the dashboard), "/w/<id>[/t/<terminal>]" (a workstation and
// its terminal), "/admin". The server serves the page for each of them.
import { useEffect, useState } from "preact/hooks";

const listeners = new Set<() => void>();
window.addEventListener("popstate", () => listeners.forEach((f) => f()));

export function navigate(path: string, replace = false) {
  if (path === location.pathname) return;
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  listeners.forEach((f) => f());
}

export function usePath(): string {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const f = () => setPath(location.pathname);
    listeners.add(f);
    return () => void listeners.delete(f);
  }, []);
  return path;
}

/** A link that moves within the page. */
export function go(e: MouseEvent, path: string) {
  if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
  e.preventDefault();
  navigate(path);
}
