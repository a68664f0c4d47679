#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target, fuzz/corpus/<target>/, from the test
fixtures (tests/fixtures/), the README's movement examples, the schema's examples, the
shipped configs (config/*.toml) and small platform payloads shaped like the unit tests'.

Run from anywhere: python3 fuzz/seed_corpus.py (idempotent; file names are content hashes).
A target that reads a selector byte first (see src/fuzzing.rs) gets it prepended here.
"""
import hashlib
import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def with_selector(selector, data):
    return bytes([selector]) + (data.encode() if isinstance(data, str) else data)


def answer(status, body):
    """An HTTP answer seed: two status bytes (status - 100) then the body."""
    return (status - 100).to_bytes(2, "big") + json.dumps(body).encode()


# Movements: the README's json examples and the schema's examples.
readme = (ROOT / "README.md").read_text()
movements = []
for block in re.findall(r"```json\n(.*?)```", readme, re.S):
    text = block.strip()
    try:
        movements.append(json.loads(text))
        continue
    except json.JSONDecodeError:
        pass
    for line in text.splitlines():
        try:
            movements.append(json.loads(line))
        except json.JSONDecodeError:
            pass
schema = json.loads((ROOT / "schemas" / "movement.schema.json").read_text())
movements += [m for m in schema.get("examples", []) if isinstance(m, dict)]
for movement in movements:
    text = json.dumps(movement)
    put("kafka_movement", text)
    put("rest_movements", text)
    put("stored_movement", text)
    without_key = {k: v for k, v in movement.items() if k != "idempotency_key"}
    put("kafka_movement", json.dumps(without_key))
put("rest_movements", json.dumps(movements))

# Shopify: the webhook fixtures, by topic (selector = 3 * topic index, src/fuzzing.rs).
SHOPIFY_TOPICS = ["orders_create", "orders_updated", "orders_cancelled", "orders_edited",
                  "refunds_create", "inventory_levels_update"]
for path in sorted((ROOT / "tests" / "fixtures" / "shopify").glob("*.json")):
    stem = path.stem
    topic = next((i for i, t in enumerate(SHOPIFY_TOPICS) if stem.startswith(t)), 0)
    put("shopify", with_selector(3 * topic, path.read_bytes()))
put("shopify", with_selector(1, "X-Shopify-Topic: orders/create\nX-Shopify-Hmac-Sha256: dGVzdA==\n"
                                "X-Shopify-Webhook-Id: w-1\nX-Shopify-Event-Id: e-1"))
put("shopify", with_selector(2, answer(200, {"data": {"inventorySetQuantities": {
    "inventoryAdjustmentGroup": {"id": "g"}, "userErrors": [
        {"field": ["input", "quantities", "0", "compareQuantity"], "message": "stale",
         "code": "COMPARE_QUANTITY_STALE"}]}}})))
put("shopify", with_selector(2, answer(200, {"data": {"nodes": [
    {"id": "gid://shopify/InventoryItem/1001", "inventoryLevel": {"quantities": [
        {"name": "available", "quantity": 7}]}}]}})))
put("shopify", with_selector(2, answer(200, {"inventory_levels": [
    {"inventory_item_id": 1001, "location_id": 1, "available": 5}]})))
put("shopify", with_selector(2, answer(200, {"inventory_level": {
    "inventory_item_id": 1001, "location_id": 1, "available": 5}})))

# WooCommerce: orders (selector 0), the creation ping (1), REST answers (2).
woo_order = {"id": 501, "status": "processing", "date_modified_gmt": "2026-01-02T03:04:05",
             "line_items": [
                 {"id": 7, "product_id": 10, "variation_id": 0, "sku": "MUG", "quantity": 2,
                  "meta_data": [{"id": 1, "key": "_restock_refunded_items", "value": "1"}]},
                 {"id": 8, "product_id": 20, "variation_id": 21, "sku": "", "quantity": 1},
                 {"id": "9", "product_id": "30", "sku": None, "quantity": "1"}],
             "refunds": []}
for status in ["processing", "cancelled", "refunded", "completed", "pending"]:
    put("woocommerce", with_selector(0, json.dumps(dict(woo_order, status=status))))
put("woocommerce", with_selector(1, "webhook_id=42"))
put("woocommerce", with_selector(2, answer(200, {"update": [
    {"id": 21, "stock_quantity": 4, "manage_stock": True},
    {"id": 22, "error": {"code": "woocommerce_rest_product_invalid_id", "message": "no"}}]})))
put("woocommerce", with_selector(2, answer(413, {"code": "rest_batch_max_items",
                                                  "message": "at most 100", "data": {"status": 413}})))
put("woocommerce", with_selector(2, answer(200, [{"id": 21, "stock_quantity": 3,
                                                   "manage_stock": True}])))

# Amazon: notification (0), getOrders (1), getOrderItems (2), summaries (3), answers (4).
notification = {"NotificationVersion": "1.0", "NotificationType": "ORDER_CHANGE",
                "PayloadVersion": "1.0", "EventTime": "2030-01-01T10:00:00Z",
                "Payload": {"OrderChangeNotification": {
                    "NotificationLevel": "OrderLevel", "SellerId": "A2EXAMPLESELLER",
                    "AmazonOrderId": "402-0000001-0000001", "OrderChangeType": "OrderStatusChange",
                    "OrderChangeTrigger": {"TimeOfOrderChange": "2030-01-01T10:00:00Z"},
                    "Summary": {"MarketplaceId": "A1805IZSGTT6HS", "OrderStatus": "Canceled",
                                "CancelReason": "NoInventory", "FulfillmentType": "MFN",
                                "OrderItems": [
                                    {"OrderItemId": "11", "SellerSKU": "SKU-B-NL", "Quantity": 3,
                                     "QuantityShipped": 1, "IsBuyerRequestedCancel": True},
                                    {"OrderItemId": "12", "SellerSKU": "SKU-A", "Quantity": 1,
                                     "QuantityShipped": 0, "IsBuyerRequestedCancel": False}]}}},
                "NotificationMetadata": {"NotificationId": "n-1"}}
put("amazon", with_selector(0, json.dumps(notification)))
for status in ["Unshipped", "Shipped", "PartiallyShipped", "Pending"]:
    summary = notification["Payload"]["OrderChangeNotification"]["Summary"]
    put("amazon", with_selector(0, json.dumps(dict(notification, Payload={
        "OrderChangeNotification": dict(notification["Payload"]["OrderChangeNotification"],
                                        Summary=dict(summary, OrderStatus=status))}))))
put("amazon", with_selector(1, json.dumps({"payload": {"Orders": [
    {"AmazonOrderId": "405-1", "OrderStatus": "Unshipped", "FulfillmentChannel": "MFN",
     "LastUpdateDate": "2030-01-01T10:00:00Z"}],
    "OrderItems": [{"OrderItemId": "1", "SellerSKU": "SKU-B-NL", "QuantityOrdered": 2,
                    "QuantityShipped": 0}], "NextToken": "t"}})))
put("amazon", with_selector(2, json.dumps({"payload": {"OrderItems": [
    {"OrderItemId": "1", "SellerSKU": "SKU-B-NL", "QuantityOrdered": 2, "QuantityShipped": 1,
     "BuyerRequestedCancel": {"IsBuyerRequestedCancel": "true"}}]}})))
put("amazon", with_selector(3, json.dumps({"payload": {"inventorySummaries": [
    {"sellerSku": "SKU-B-NL", "inventoryDetails": {"fulfillableQuantity": 5},
     "lastUpdatedTime": "2030-01-01T10:00:00Z"}]}, "pagination": {"nextToken": "n"}})))
put("amazon", with_selector(4, answer(200, {"status": "ACCEPTED", "submissionId": "s",
                                             "issues": []})))
put("amazon", with_selector(4, answer(400, {"errors": [{"code": "InvalidInput",
                                                         "message": "bad"}]})))
put("amazon", with_selector(4 + 5 * 2, answer(200, {"issues": [
    {"messageId": 1, "code": "8541", "message": "x", "severity": "ERROR"}]})))
put("amazon", with_selector(4, answer(200, {"processingStatus": "DONE",
                                             "resultFeedDocumentId": "d"})))
put("amazon", with_selector(4, answer(200, {"fulfillmentAvailability": [
    {"fulfillmentChannelCode": "DEFAULT", "quantity": 3}]})))

# Bol.com: order list (0), order (1), returns (2), answers (3).
put("bolcom", with_selector(0, json.dumps({"orders": [
    {"orderId": "A0001", "orderPlacedDateTime": "2030-01-01T10:00:00+01:00",
     "orderItems": [{"orderItemId": "111", "quantity": 3, "quantityShipped": 0,
                     "quantityCancelled": 1}]}]})))
put("bolcom", with_selector(1, json.dumps({"orderId": "A0001", "orderItems": [
    {"orderItemId": "111", "quantity": 3, "quantityShipped": 0, "quantityCancelled": 2,
     "cancellationRequest": False, "fulfilment": {"method": "FBR"},
     "offer": {"offerId": "offer-1", "reference": "SKU-A"}, "product": {"ean": "8712345678901"}},
    {"orderItemId": "112", "quantity": 1, "fulfilment": {"method": "FBB"},
     "offer": {"offerId": "offer-2", "reference": "SKU-B"}},
    {"orderItemId": "113", "quantity": 1, "fulfilment": {"method": "FBR"},
     "offer": {"offerId": "offer-9"}}]})))
put("bolcom", with_selector(2, json.dumps({"returns": [{"returnItems": [
    {"rmaId": "R1", "orderId": "A0001", "ean": "8712345678901", "expectedQuantity": 1}]}]})))
put("bolcom", with_selector(3, answer(202, {"processStatusId": "1", "status": "PENDING",
                                             "description": "d"})))
put("bolcom", with_selector(3, answer(200, {"offerId": "offer-1", "stock": {"amount": 4}})))
put("bolcom", with_selector(3, answer(400, {"violations": [{"name": "stock.amount",
                                                             "reason": "too large"}],
                                             "detail": "bad"})))

# Config: the shipped configs (selector 0) and interpolation texts (selector 1).
for path in sorted((ROOT / "config").glob("*.toml")):
    text = path.read_text()
    put("config", with_selector(0, text))
    put("config", with_selector(1, text))
put("config", with_selector(1, "a = \"${HOME}\" b = \"${UNSET_X:-dflt}\" c = \"$${LITERAL}\" $"))
