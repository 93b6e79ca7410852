// Names of persons and positions, learned from what the API returns, looked up once.
//
// The API has no "person by id" lookup: a name is known once it came with a message, a search
// hit or sign-in. What was learned is kept per signed-in person in localStorage (names and
// position titles only, never a position's holders, which change), so a reload or an offline
// start still titles a direct chat or a position thread by name instead of “用户 12”.
import { api, getSession } from './api.js';
import { unitLabel } from './store.js';

const persons = new Map();     // id -> name
const positions = new Map();   // id -> position view (GET /api/v1/org/positions/{id}) or a promise
const titles = new Map();      // id -> "role · unit", remembered
let restoredFor = null;
let saveTimer = null;

const storeKey = () => 'zzd.names.' + getSession()?.personId;

function restore() {
  const who = getSession()?.personId;
  if (who == null || restoredFor === who) return;
  restoredFor = who;
  try {
    const j = JSON.parse(localStorage.getItem(storeKey()) || '{}');
    for (const [id, name] of j.persons || []) if (!persons.has(id)) persons.set(id, name);
    for (const [id, title] of j.titles || []) if (!titles.has(id)) titles.set(id, title);
  } catch { /* ignore */ }
}

function persist() {
  clearTimeout(saveTimer);
  saveTimer = setTimeout(() => {
    if (getSession()?.personId !== restoredFor) return;
    try {
      localStorage.setItem(storeKey(), JSON.stringify({ persons: [...persons].slice(-2000), titles: [...titles].slice(-2000) }));
    } catch { /* full */ }
  }, 300);
}

// 退出: what was learned goes with the person who learned it (the next person to sign in on this
// browser must not have it written into their own store).
export function forgetNames() {
  clearTimeout(saveTimer);
  persons.clear();
  positions.clear();
  titles.clear();
  restoredFor = null;
}

export function learnPerson(p) {
  if (!p || p.id == null || !p.name) return;
  restore();
  if (persons.get(p.id) === p.name) return;
  persons.set(p.id, p.name);
  persist();
}

export function personName(id) {
  restore();
  return persons.get(id) || `用户${id}`;
}

export function knownPerson(id) { restore(); return persons.has(id); }

function titleOf(v) {
  return `${v.role} · ${unitLabel(v.unit_path)}`;
}

export function learnPosition(v) {
  if (!v || v.id == null) return;
  restore();
  positions.set(v.id, v);
  if (v.role && titles.get(v.id) !== titleOf(v)) { titles.set(v.id, titleOf(v)); persist(); }
}

export function positionCached(id) {
  const v = positions.get(id);
  return v && !(v instanceof Promise) ? v : null;
}

export function loadPosition(id) {
  const v = positions.get(id);
  if (v) return v instanceof Promise ? v : Promise.resolve(v);
  const p = api('/api/v1/org/positions/' + id).then((view) => { learnPosition(view); return view; },
    (e) => { positions.delete(id); throw e; });
  positions.set(id, p);
  return p;
}

export function positionTitle(id, otherwise = null) {
  const v = positionCached(id);
  if (v) return titleOf(v);
  restore();
  return titles.get(id) || otherwise || `岗位 ${id}`;
}

// Look positions up (cached) so that their titles can be shown; then() re-renders.
export function loadPositions(ids) {
  return Promise.all([...new Set(ids)].filter((id) => id != null).map((id) => loadPosition(id).catch(() => null)));
}
