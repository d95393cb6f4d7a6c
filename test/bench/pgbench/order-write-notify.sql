-- The order-write limit with what a stockctl stock change does while someone listens (an
-- event stream open, or stock --watch): a pg_notify of the changed row in the same
-- transaction. Beside order-write.sql, it measures what that NOTIFY costs.
\set i random(1, :skus)
WITH up AS (
  UPDATE products SET reserved_stock = reserved_stock + 1, version = version + 1, updated_at = now()
   WHERE sku = 'PGBENCH-' || :i AND stock_quantity - reserved_stock >= 1
  RETURNING product_id, sku, name, price, stock_quantity, reserved_stock, version, in_stock
), n AS (
  SELECT pg_notify('stockctl_stock', json_build_object('sku', sku, 'stock_quantity', stock_quantity,
         'reserved_stock', reserved_stock, 'version', version, 'in_stock', in_stock)::text) FROM up
), o AS (
  INSERT INTO orders (status, payment_expires_at, subtotal, total, item_count)
  SELECT 'pending', now() + interval '15 minutes', price, price, 1 FROM up, n
  RETURNING order_id
), li AS (
  INSERT INTO order_items (order_id, product_id, sku, name, unit_price, quantity, line_total)
  SELECT o.order_id, up.product_id, up.sku, up.name, up.price, 1, up.price FROM o, up
  RETURNING order_item_id, order_id
), r AS (
  INSERT INTO stock_reservations (order_id, order_item_id, product_id, sku, quantity, expires_at)
  SELECT li.order_id, li.order_item_id, up.product_id, up.sku, 1, now() + interval '15 minutes' FROM li, up
  RETURNING reservation_id, order_id
)
INSERT INTO stock_movements (product_id, sku, kind, stock_delta, reserved_delta, order_id, reservation_id, actor)
SELECT up.product_id, up.sku, 'reserve', 0, 1, r.order_id, r.reservation_id, 'pgbench' FROM r, up;
