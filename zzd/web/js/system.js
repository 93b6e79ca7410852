// System notes (a group created or renamed, members joined or left, a position handed over) in
// Chinese. Events and history carry `system` (what happened); the inbox's last message has only
// the server's English snippet (“1 joined, 1 left”), mapped here.
const SNIPPETS = [
  [/^created (.*)$/s, (t) => `创建了群“${t}”`],
  [/^renamed the group to (.*)$/s, (t) => `群名改为“${t}”`],
  [/^(\d+) joined, (\d+) left$/, (j, l) => members(+j, +l)],
  [/^(\d+) joined$/, (n) => members(+n, 0)],
  [/^(\d+) left$/, (n) => members(0, +n)],
  [/^(\d+) positions retired$/, (n) => retired(+n)],
  [/^岗位交接$/, () => HANDOVER],
];
const HANDOVER = '岗位交接：新的在岗人已接手本会话';

// A member position retired with no one leaving (vacant, or its holder also named): docs/conversations.md.
function retired(n) {
  return `${n} 个岗位已撤销，移出本群`;
}

function members(joined, left) {
  if (!left) return `${joined} 人加入`;
  if (!joined) return `${left} 人离开`;
  return `成员变动：加入 ${joined} 人，离开 ${left} 人`;
}

// `m`: a message ({system, body}) or an inbox row's last message ({system?, snippet}).
export function systemText(m) {
  const s = m.system || {};
  if (s.event === 'handover') return HANDOVER;
  if (s.event === 'members') {
    const [joined, left] = [(s.joined || []).length, (s.left || []).length];
    return joined || left || !(s.position_ids || []).length ? members(joined, left) : retired(s.position_ids.length);
  }
  if (s.event === 'created') return `创建了群“${s.title || ''}”`;
  if (s.event === 'renamed') return `群名改为“${s.title || ''}”`;
  const text = m.body ?? m.snippet ?? '';
  for (const [re, fn] of SNIPPETS) {
    const hit = re.exec(text);
    if (hit) return fn(...hit.slice(1));
  }
  return !text || /[A-Za-z]/.test(text) ? '系统消息' : text;
}
