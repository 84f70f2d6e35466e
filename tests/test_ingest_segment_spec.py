"""Segment ecommerce-spec payloads map onto the tracking plan."""

from tests.conftest import BROWSER_KEY, queued_rows


def test_segment_order_completed_products_become_items(client, event_log) -> None:
    order = {
        "event": "Order Completed", "anonymousId": "a", "messageId": "oc1",
        "properties": {"orderId": "o1", "revenue": 10.5, "currency": "USD",
                       "products": [{"productId": "p1", "name": "Shoe", "price": 10.5,
                                     "quantity": 1}]},
    }
    response = client.post("/v1/track", json=order, auth=(BROWSER_KEY, ""))
    assert response.status_code == 200, response.text
    row = queued_rows(event_log)[0]
    assert row["event"] == "purchase"
    assert row["flags"] == []
    assert '"items":[{"product_id":"p1"' in row["properties"]


def test_segment_mobile_sdks_batch_path_is_accepted(client, event_log) -> None:
    batch = {"batch": [{"type": "track", "event": "Product Viewed", "anonymousId": "a",
                        "messageId": "mb1", "properties": {"product_id": "p1"}}]}
    response = client.post("/v1/b", json=batch, auth=(BROWSER_KEY, ""))
    assert response.status_code == 200
    assert queued_rows(event_log)[0]["event"] == "product_view"


def test_retry_after_is_exposed_to_cross_origin_scripts(client) -> None:
    response = client.post("/v1/track", json={}, headers={"Origin": "https://shop.example"})
    assert "retry-after" in response.headers["access-control-expose-headers"].lower()
