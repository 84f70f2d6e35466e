// A router-style single-page app: pushState first, then render and set the title (as most routers do).
(function () {
  var base = '/' + location.pathname.split('/')[1];
  var titles = { '/': 'SPA Home', '/x': 'X', '/checkout/payment': 'Payment', '/thanks': 'Thank you for your order' };
  var app = document.getElementById('app');

  function render() {
    var route = location.pathname.slice(base.length) || '/';
    app.textContent = route;
    if (route === '/product/sku-42') {
      // The product's name comes from an API: the title follows a moment later.
      setTimeout(function () { document.title = 'Road Runner'; }, 150);
      return;
    }
    document.title = titles[route] || 'Not found';
  }

  document.addEventListener('click', function (e) {
    var a = e.target.closest && e.target.closest('a[data-route]');
    if (!a) return;
    e.preventDefault();
    history.pushState({}, '', base + a.getAttribute('data-route'));
    render();
  });
  window.addEventListener('popstate', render);
  render();
})();
