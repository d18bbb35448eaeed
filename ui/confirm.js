// An in-page confirmation (the <dialog> in index.html) for destructive actions. It resolves true only when
// the user picks the confirming button; Cancel, Escape and closing resolve false. Focus starts on Cancel.

let pending = null;

/** Asks `question` with a dialog; `action` labels the confirming button. Resolves true to go ahead. */
export function confirmAction({ title, question, action }) {
  const dialog = document.getElementById('confirm');
  const ok = document.getElementById('confirm-ok');
  const cancel = document.getElementById('confirm-cancel');
  pending?.(false);
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = question;
  ok.textContent = action;
  return new Promise((resolve) => {
    const finish = (answer) => {
      if (pending !== finish) return;
      pending = null;
      ok.removeEventListener('click', onOk);
      cancel.removeEventListener('click', onCancel);
      dialog.removeEventListener('close', onClose);
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const onOk = () => finish(true);
    const onCancel = () => finish(false);
    const onClose = () => finish(false);
    pending = finish;
    ok.addEventListener('click', onOk);
    cancel.addEventListener('click', onCancel);
    dialog.addEventListener('close', onClose);
    dialog.showModal();
    cancel.focus();
  });
}
