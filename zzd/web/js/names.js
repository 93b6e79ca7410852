// Names of persons and positions, learned from what the API returns, looked up once.
import { api } from './api.js';

const persons = new Map();     // id -> name
const positions = new Map();   // id -> position view (GET /api/v1/org/positions/{id}) or a promise

export function learnPerson(p) {
  if (p && p.id != null && p.name) persons.set(p.id, p.name);
}

export function personName(id) {
  return persons.get(id) || `用户${id}`;
}

export function knownPerson(id) { return persons.has(id); }

export function learnPosition(v) {
  if (v && v.id != null) positions.set(v.id, v);
}

export function positionCached(id) {
  const v = positions.get(id);
  return v && !(v instanceof Promise) ? v : null;
}

export function loadPosition(id) {
  const v = positions.get(id);
  if (v) return v instanceof Promise ? v : Promise.resolve(v);
  const p = api('/api/v1/org/positions/' + id).then((view) => { positions.set(id, view); return view; },
    (e) => { positions.delete(id); throw e; });
  positions.set(id, p);
  return p;
}

export function positionTitle(id) {
  const v = positionCached(id);
  if (!v) return `岗位 ${id}`;
  const path = v.unit_path || [];
  return `${v.role} · ${path[path.length - 1] || ''}`;
}
