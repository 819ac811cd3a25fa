/* global document, uPlot */
// tenantwall console: draws the usage chart of a tenant page (uPlot, served locally; no inline script under the CSP).
(function () {
  var holder = document.getElementById('usage-chart');
  var data = document.getElementById('usage-data');
  if (!holder || !data || typeof uPlot === 'undefined') return;
  var series = JSON.parse(data.textContent);
  var width = Math.min(900, holder.clientWidth || 900);
  new uPlot(
    {
      width: width,
      height: 260,
      scales: { x: { time: true } },
      series: [{}, { label: 'requests', stroke: '#2b6cb0', width: 2 }, { label: 'statements', stroke: '#c05621', width: 2 }, { label: 'db ms', stroke: '#2f855a', width: 2 }],
    },
    [series.t, series.requests, series.statements, series.dbMs],
    holder,
  );
})();
