/* global document, window, fetch, uPlot */
// tenantwall console: the charts of a tenant page (uPlot, served locally), the typed confirmation of a delete and
// the live progress of a long operation. No inline script under the CSP: the data comes in JSON script blocks.
(function () {
  function width(holder) {
    return Math.max(280, Math.min(900, holder.clientWidth || 900));
  }
  // The activity of the tenant over the metrics window.
  var holder = document.getElementById('usage-chart');
  var data = document.getElementById('usage-data');
  if (holder && data && typeof uPlot !== 'undefined') {
    var series = JSON.parse(data.textContent);
    new uPlot(
      {
        width: width(holder),
        height: 220,
        scales: { x: { time: true } },
        series: [{}, { label: 'requests', stroke: '#2b6cb0', width: 2 }, { label: 'statements', stroke: '#c05621', width: 2 }, { label: 'db ms', stroke: '#2f855a', width: 2 }],
      },
      [series.t, series.requests, series.statements, series.dbMs],
      holder,
    );
  }
  // Usage per meter over the chosen range: one series per meter, each on its own colour.
  var meterHolder = document.getElementById('meter-chart');
  var meterData = document.getElementById('meter-data');
  if (meterHolder && meterData && typeof uPlot !== 'undefined') {
    var usage = JSON.parse(meterData.textContent);
    var colours = ['#6b46c1', '#dd6b20', '#38a169', '#d53f8c', '#3182ce', '#718096'];
    // Meters count different things (tokens, invoices, GB): each gets its own y scale, the first two an axis.
    var scales = { x: { time: true } };
    var axes = [{}];
    usage.meters.forEach(function (m, i) {
      scales[m.meter] = { auto: true, range: function (u, min, max) { return [0, Math.max(1, max) * 1.1]; } };
      if (i < 2) axes.push({ scale: m.meter, side: i === 0 ? 3 : 1, stroke: colours[i], grid: { show: i === 0 }, size: 60 });
    });
    var opts = {
      width: width(meterHolder),
      height: 260,
      scales: scales,
      axes: axes,
      series: [{}].concat(
        usage.meters.map(function (m, i) {
          return { label: m.meter, scale: m.meter, stroke: colours[i % colours.length], fill: colours[i % colours.length] + '22', width: 2, points: { show: usage.t.length <= 60 } };
        }),
      ),
    };
    new uPlot(opts, [usage.t].concat(usage.meters.map(function (m) { return m.values; })), meterHolder);
    meterHolder.setAttribute('data-drawn', 'true');
    // For the render-time measure (test/observability/console-scale.test.ts): navigation start to a drawn chart.
    if (window.performance && window.performance.mark) window.performance.mark('tw-meter-chart-drawn');
  }
  // Typed confirmation: the delete button stays disabled until the slug is typed (the server checks it too).
  var confirms = document.querySelectorAll('input[data-confirm]');
  for (var i = 0; i < confirms.length; i++) {
    (function (input) {
      var button = input.form && input.form.querySelector('button');
      if (!button) return;
      var sync = function () {
        button.disabled = input.value !== input.getAttribute('data-confirm');
      };
      input.addEventListener('input', sync);
      sync();
    })(confirms[i]);
  }
  // A running operation: poll its status and redraw the bar; show the final page when it ends.
  var op = document.getElementById('operation');
  if (op && op.getAttribute('data-status') === 'running') {
    var bar = document.getElementById('op-progress');
    var phase = document.getElementById('op-phase');
    var poll = function () {
      fetch(op.getAttribute('data-status-url'), { credentials: 'same-origin', headers: { accept: 'application/json' } })
        .then(function (r) {
          return r.json();
        })
        .then(function (s) {
          if (s.progress) {
            if (s.progress.total !== null) {
              bar.max = Math.max(1, s.progress.total);
              bar.value = s.progress.done;
            }
            phase.textContent = s.progress.phase + (s.progress.table ? ' ' + s.progress.table : '') + ' ' + s.progress.done + (s.progress.total !== null ? ' / ' + s.progress.total : '');
          }
          if (s.status !== 'running') window.location.reload();
          else window.setTimeout(poll, 300);
        })
        .catch(function () {
          window.setTimeout(poll, 1000);
        });
    };
    window.setTimeout(poll, 200);
  }
})();
