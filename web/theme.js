/* Applies the saved or system colour theme before the first paint (no flash). */
(function () {
  var t = null;
  try { t = localStorage.getItem('vigil.theme'); } catch (e) { /* storage blocked */ }
  if (t !== 'light' && t !== 'dark')
    t = window.matchMedia && matchMedia('(prefers-color-scheme: light)').matches ? 'light' : 'dark';
  document.documentElement.setAttribute('data-theme', t);
})();
