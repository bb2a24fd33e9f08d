// The console's behaviour, on top of server-rendered pages: the event stream that has
// htmx fetch live regions again, the graphs (uPlot) of the history reads, and the
// copy buttons. Everything works without it but live updates and graphs.
(function () {
  'use strict';

  function ready(f) {
    if (document.readyState !== 'loading') f(); else document.addEventListener('DOMContentLoaded', f);
  }

  // Every event of the caller's (one stream per page): live regions reload, graphs too.
  // The stream is closed when the page is left: a page kept in the back/forward cache
  // would otherwise hold its connection, and after six such pages the browser has no
  // connection left for this host (a minute's stall, found by the console bench).
  function listen() {
    var src = document.body.dataset.live;
    if (!src || !window.EventSource || !document.querySelector('[hx-trigger], .chart')) return;
    var es = null;
    var pending = null;
    function open() {
      if (es) return;
      es = new EventSource(src + '&named=false');
      es.onmessage = function () {
        clearTimeout(pending);
        pending = setTimeout(function () {
          if (window.htmx) window.htmx.trigger(document.body, 'pl-event');
          charts();
        }, 150);
      };
    }
    window.addEventListener('pagehide', function () {
      if (es) { es.close(); es = null; }
    });
    window.addEventListener('pageshow', function (e) {
      // Back from the cache: what changed meanwhile, then the stream again.
      if (e.persisted) {
        if (window.htmx) window.htmx.trigger(document.body, 'pl-event');
        open();
      }
    });
    open();
  }

  var SERIES = {
    conn: [{ stroke: '#0b57b0', width: 2 }, { stroke: '#a3211c', dash: [6, 4] }],
    rate: [{ stroke: '#0b57b0', width: 2 }, { stroke: '#a3211c', width: 2 }],
    bytes: [{ stroke: '#1c6b32', width: 2 }, { stroke: '#7a4b00', width: 2 }]
  };

  function columns(kind, h) {
    var p = h.points;
    var t = p.map(function (x) { return x.t; });
    if (kind === 'conn') return [t, p.map(function (x) { return x.active_connections; }), p.map(function () { return h.connection_limit; })];
    if (kind === 'rate') return [t, p.map(function (x) { return x.new_connections_per_s; }), p.map(function (x) { return x.drops_per_s; })];
    return [t, p.map(function (x) { return x.bytes_in_per_s; }), p.map(function (x) { return x.bytes_out_per_s; })];
  }

  // Connections: the limit is in view once the count nears it; below, the scale follows
  // the count (one connection under a limit of 3000 would be a flat line).
  function yRange(kind, h) {
    return function (u, min, max) {
      if (kind !== 'conn') return [0, Math.max(1, max)];
      var top = Math.max.apply(null, u.data[1].concat([0]));
      var lim = h.connection_limit;
      return [0, top * 2 >= lim ? lim * 1.05 : Math.max(5, Math.ceil(top * 1.5))];
    };
  }

  var cache = {};
  function history(src) {
    if (!cache[src]) {
      cache[src] = fetch(src, { credentials: 'same-origin' }).then(function (r) {
        if (!r.ok) throw new Error(r.status);
        return r.json();
      });
      cache[src].finally(function () { setTimeout(function () { delete cache[src]; }, 500); });
    }
    return cache[src];
  }

  function charts() {
    document.querySelectorAll('#live-count').forEach(function (el) {
      history(el.dataset.src).then(function (h) {
        var last = h.points[h.points.length - 1];
        if (last) el.textContent = String(last.active_connections);
      }).catch(function () {});
    });
    document.querySelectorAll('.chart').forEach(function (el) {
      history(el.dataset.src).then(function (h) {
        var data = columns(el.dataset.kind, h);
        if (el.plot) { el.plot.setData(data); return; }
        if (!window.uPlot) return;
        var labels = (el.dataset.labels || '|').split('|');
        var opts = {
          width: Math.max(280, el.clientWidth), height: 180,
          series: [{}].concat(SERIES[el.dataset.kind].map(function (s, i) { return Object.assign({ label: labels[i] }, s); })),
          axes: [{}, { size: 60 }],
          scales: { y: { range: yRange(el.dataset.kind, h) } }
        };
        el.plot = new window.uPlot(opts, data, el);
      }).catch(function () {});
    });
  }

  function copy() {
    document.addEventListener('click', function (e) {
      var b = e.target.closest && e.target.closest('button.copy');
      if (!b || !navigator.clipboard) return;
      navigator.clipboard.writeText(b.dataset.copy).then(function () {
        var was = b.textContent;
        b.textContent = b.dataset.done || 'Copied';
        setTimeout(function () { b.textContent = was; }, 1200);
      });
    });
  }

  ready(function () {
    listen();
    copy();
    if (document.querySelector('.chart, #live-count')) {
      charts();
      setInterval(charts, 5000);
      window.addEventListener('resize', function () {
        document.querySelectorAll('.chart').forEach(function (el) {
          if (el.plot) el.plot.setSize({ width: Math.max(280, el.clientWidth), height: 180 });
        });
      });
    }
  });
})();
