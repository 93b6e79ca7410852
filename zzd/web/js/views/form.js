// What the forms that send something (发通知, 派任务, 上报, a task's action) share: photos uploaded
// as they are added, and a send that shows its refusal in the form's words and is busy meanwhile.
import { useState } from 'preact/hooks';
import { upload } from '../api.js';

// Photos added to a form: each is uploaded at once (POST /api/v1/uploads) and the form keeps its
// digest, to send in `attachments`/`photos`. `initial`: digests already uploaded (a kept draft).
// `onError(err)` says what failed.
export function usePhotos(onError, initial = []) {
  const [photos, setPhotos] = useState(initial);
  async function add(e) {
    const files = [...e.target.files];
    e.target.value = '';
    try {
      for (const f of files) {
        const r = await upload(f);
        setPhotos((c) => (c.includes(r.digest) ? c : [...c, r.digest]));
      }
    } catch (err) { onError(err); }
  }
  return [photos, setPhotos, add];
}

// A form's submit handler around `send` (which throws to refuse: an ApiError from the server, or
// an Error whose message is the form's own words). `textOf` turns a refusal into what the form
// shows. Busy from the submit until a refusal; a send that succeeds moves on to another view.
export function useSubmit(send, textOf = (e) => e.message) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  async function submit(e) {
    e.preventDefault();
    setError('');
    setBusy(true);
    try {
      await send();
    } catch (err) {
      setError(textOf(err));
      setBusy(false);
    }
  }
  return { busy, error, setError, submit };
}
