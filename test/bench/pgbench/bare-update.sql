-- The bare row limit: the guarded UPDATE alone, one unit, on one of :skus stock levels
-- (each SKU's level at the default location).
\set i random(1, :skus)
UPDATE stock_levels SET reserved_stock = reserved_stock + 1, version = version + 1, updated_at = now()
 WHERE sku = 'PGBENCH-' || :i AND location = 'default' AND stock_quantity - reserved_stock >= 1;
