// A tiny single-page shop: home, search results, product detail; checkout is a separate page.
(function () {
  var app = document.getElementById('app');
  var products = [
    { productId: 'sku-42', name: 'Road Runner', price: 89.9, currency: 'EUR', category: 'Shoes/Running' },
    { productId: 'sku-43', name: 'Trail Blazer', price: 119, currency: 'EUR', category: 'Shoes/Trail' },
    { productId: 'sku-44', name: 'Sprint Sock', price: 9.5, currency: 'EUR', category: 'Socks' },
  ];
  var cart = JSON.parse(sessionStorage.getItem('cart') || '[]');

  function go(path) {
    history.pushState({}, '', path);
    render();
  }

  function render() {
    var path = location.pathname;
    window.scrollTo(0, 0);
    if (path.indexOf('/product/') === 0) return renderProduct(path.slice(9));
    if (path === '/search') return renderSearch(new URLSearchParams(location.search).get('q') || '');
    renderHome();
  }

  function renderHome() {
    document.title = 'Test Shop — Home';
    app.innerHTML =
      '<h1>Spring sale</h1>' +
      '<a class="cta" id="hero-cta" data-track="hero-cta" href="/product/sku-42" data-nav="/product/sku-42">Shop the sale</a>' +
      '<div id="newsletter" data-track="newsletter-box">Newsletter: <input id="email" name="email" type="email"> ' +
      '<button type="button" id="subscribe">Subscribe</button></div>' +
      '<div class="tall">scroll down</div>';
  }

  function renderSearch(q) {
    document.title = 'Search: ' + q;
    var hits = products.filter(function (p) { return /shoe|run|trail|sock/i.test(q) && (p.category.indexOf('Shoes') === 0 || /sock/i.test(q)); });
    app.innerHTML = '<h1 data-search-result-count="' + hits.length + '">' + hits.length + ' results for ' + q.replace(/</g, '&lt;') + '</h1>' +
      hits.map(function (p) { return '<p><a href="/product/' + p.productId + '" data-nav="/product/' + p.productId + '" data-product-id="' + p.productId + '">' + p.name + '</a></p>'; }).join('');
  }

  function renderProduct(id) {
    var p = products.filter(function (x) { return x.productId === id; })[0];
    document.title = p.name;
    app.innerHTML =
      '<h1>' + p.name + '</h1>' +
      '<div id="gallery" data-swipe="product-gallery" data-product-id="' + p.productId + '">' +
      '<div class="slide" style="background:#a33">1</div><div class="slide" style="background:#3a3">2</div><div class="slide" style="background:#33a">3</div></div>' +
      '<p>' + p.price + ' ' + p.currency + '</p>' +
      '<button id="add-to-cart" data-product-id="' + p.productId + '">Add to cart</button> ' +
      '<a id="to-checkout" href="/shop/checkout.html">Checkout</a>' +
      '<div class="tall">details</div>';
    funnelhouse.productView(p);
    document.getElementById('add-to-cart').addEventListener('click', function () {
      cart.push({ productId: p.productId, name: p.name, price: p.price, category: p.category, quantity: 1 });
      sessionStorage.setItem('cart', JSON.stringify(cart));
      funnelhouse.addToCart({ productId: p.productId, name: p.name, price: p.price, currency: p.currency, category: p.category, quantity: 1 });
    });
  }

  // In-app links navigate without a page load.
  document.addEventListener('click', function (e) {
    var a = e.target.closest && e.target.closest('[data-nav]');
    if (!a) return;
    e.preventDefault();
    go(a.getAttribute('data-nav'));
  });
  // The search form stays in the app: results render, then the URL changes.
  document.getElementById('search-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var q = document.getElementById('search-input').value;
    renderSearch(q);
    history.pushState({}, '', '/search?q=' + encodeURIComponent(q));
  });
  window.addEventListener('popstate', render);
  render();
})();
