// Entry point: render the client, register the service worker (offline shell).
import { render, h } from 'preact';
import { App } from './app.js';

const root = document.getElementById('app');
root.textContent = '';
render(h(App, null), root);
if ('serviceWorker' in navigator && location.protocol !== 'file:') {
  navigator.serviceWorker.register('/sw.js').catch(() => {});
}
