/* funnelhouse snippet: queues calls until the script has loaded. Replace the URL. */
(function (w, d, src) {
  var fh = (w.funnelhouse = w.funnelhouse || []);
  if (fh.loaded || fh.snippet) return;
  fh.snippet = true;
  var methods = ['init', 'track', 'page', 'screen', 'identify', 'alias', 'group', 'reset', 'flush', 'optIn', 'optOut',
    'productView', 'addToCart', 'removeFromCart', 'beginCheckout', 'purchase', 'search', 'searchResults', 'setAnonymousId'];
  for (var i = 0; i < methods.length; i++) {
    (function (m) {
      fh[m] = function () {
        fh.push([m, Array.prototype.slice.call(arguments), new Date().getTime()]);
        return fh;
      };
    })(methods[i]);
  }
  var s = d.createElement('script');
  s.async = true;
  s.src = src;
  var first = d.getElementsByTagName('script')[0];
  if (first && first.parentNode) first.parentNode.insertBefore(s, first);
  else d.head.appendChild(s);
})(window, document, '__SCRIPT_URL__');
