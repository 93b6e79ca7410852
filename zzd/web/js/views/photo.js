// A photo from the upload store (GET /api/v1/uploads/{digest} needs the bearer token).
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { photoUrl } from '../api.js';

export function Photo({ digest, alt = '照片' }) {
  const [src, setSrc] = useState(null);
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    let live = true;
    photoUrl(digest).then((u) => live && setSrc(u), () => live && setFailed(true));
    return () => { live = false; };
  }, [digest]);
  if (failed) return html`<span class="muted photo-missing">（照片不可见）</span>`;
  return src ? html`<img class="photo" src=${src} alt=${alt} data-digest=${digest} />`
    : html`<span class="photo placeholder" aria-label="照片加载中"></span>`;
}
