-- Stock in several locations. Every existing stock row becomes a level at the location
-- "default", with its counters, version and time; every reservation and ledger row is
-- moved to that location; then the counters leave products and variants, whose stock is
-- now the sum of their levels (the stock_items view).
CREATE TABLE "locations" (
	"code" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"kind" text DEFAULT 'warehouse' NOT NULL,
	"priority" integer DEFAULT 0 NOT NULL,
	"active" boolean DEFAULT true NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "locations_kind_valid" CHECK ("locations"."kind" IN ('warehouse','store'))
);--> statement-breakpoint
INSERT INTO "locations" ("code", "name", "kind", "priority") VALUES ('default', 'Default', 'warehouse', 0);--> statement-breakpoint
CREATE TABLE "stock_levels" (
	"sku" text NOT NULL,
	"location" text NOT NULL,
	"product_id" uuid NOT NULL,
	"variant_id" uuid,
	"stock_quantity" integer DEFAULT 0 NOT NULL,
	"reserved_stock" integer DEFAULT 0 NOT NULL,
	"incoming" integer DEFAULT 0 NOT NULL,
	"version" integer DEFAULT 0 NOT NULL,
	"in_stock" boolean GENERATED ALWAYS AS (stock_quantity - reserved_stock > 0) STORED NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "stock_levels_pkey" PRIMARY KEY("sku","location"),
	CONSTRAINT "stock_levels_stock_nonnegative" CHECK ("stock_levels"."stock_quantity" >= 0),
	CONSTRAINT "stock_levels_reserved_nonnegative" CHECK ("stock_levels"."reserved_stock" >= 0),
	CONSTRAINT "stock_levels_reserved_within_stock" CHECK ("stock_levels"."reserved_stock" <= "stock_levels"."stock_quantity"),
	CONSTRAINT "stock_levels_incoming_nonnegative" CHECK ("stock_levels"."incoming" >= 0)
);--> statement-breakpoint
CREATE TABLE "transfers" (
	"transfer_id" bigserial PRIMARY KEY NOT NULL,
	"sku" text NOT NULL,
	"product_id" uuid NOT NULL,
	"variant_id" uuid,
	"from_location" text NOT NULL,
	"to_location" text NOT NULL,
	"quantity" integer NOT NULL,
	"status" text DEFAULT 'in_transit' NOT NULL,
	"created_by" text NOT NULL,
	"closed_by" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"closed_at" timestamp with time zone,
	CONSTRAINT "transfers_quantity_positive" CHECK ("transfers"."quantity" > 0),
	CONSTRAINT "transfers_locations_differ" CHECK ("transfers"."from_location" <> "transfers"."to_location"),
	CONSTRAINT "transfers_status_valid" CHECK ("transfers"."status" IN ('in_transit','received','cancelled')),
	CONSTRAINT "transfers_closed_has_time" CHECK ("transfers"."status" = 'in_transit' OR "transfers"."closed_at" IS NOT NULL)
);--> statement-breakpoint
INSERT INTO "stock_levels" ("sku", "location", "product_id", "variant_id", "stock_quantity", "reserved_stock", "version", "updated_at")
SELECT p."sku", 'default', p."product_id", NULL, p."stock_quantity", p."reserved_stock", p."version", p."updated_at"
  FROM "products" p
 WHERE NOT EXISTS (SELECT 1 FROM "product_variants" v WHERE v."product_id" = p."product_id")
UNION ALL
SELECT v."sku", 'default', v."product_id", v."variant_id", v."stock_quantity", v."reserved_stock", v."version", v."updated_at"
  FROM "product_variants" v;--> statement-breakpoint
ALTER TABLE "stock_movements" ADD COLUMN "location" text DEFAULT 'default' NOT NULL;--> statement-breakpoint
ALTER TABLE "stock_movements" ADD COLUMN "incoming_delta" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "stock_movements" ADD COLUMN "transfer_id" bigint;--> statement-breakpoint
ALTER TABLE "stock_reservations" ADD COLUMN "location" text DEFAULT 'default' NOT NULL;--> statement-breakpoint
ALTER TABLE "stock_movements" ALTER COLUMN "location" DROP DEFAULT;--> statement-breakpoint
ALTER TABLE "stock_reservations" ALTER COLUMN "location" DROP DEFAULT;--> statement-breakpoint
ALTER TABLE "orders" ADD COLUMN "location" text;--> statement-breakpoint
ALTER TABLE "orders" ADD COLUMN "split_policy" text;--> statement-breakpoint
DROP VIEW "public"."stock_items";--> statement-breakpoint
ALTER TABLE "product_variants" DROP CONSTRAINT "product_variants_stock_nonnegative";--> statement-breakpoint
ALTER TABLE "product_variants" DROP CONSTRAINT "product_variants_reserved_nonnegative";--> statement-breakpoint
ALTER TABLE "product_variants" DROP CONSTRAINT "product_variants_reserved_within_stock";--> statement-breakpoint
ALTER TABLE "products" DROP CONSTRAINT "products_stock_nonnegative";--> statement-breakpoint
ALTER TABLE "products" DROP CONSTRAINT "products_reserved_nonnegative";--> statement-breakpoint
ALTER TABLE "products" DROP CONSTRAINT "products_reserved_within_stock";--> statement-breakpoint
ALTER TABLE "product_variants" DROP COLUMN "in_stock";--> statement-breakpoint
ALTER TABLE "product_variants" DROP COLUMN "version";--> statement-breakpoint
ALTER TABLE "product_variants" DROP COLUMN "reserved_stock";--> statement-breakpoint
ALTER TABLE "product_variants" DROP COLUMN "stock_quantity";--> statement-breakpoint
ALTER TABLE "products" DROP COLUMN "in_stock";--> statement-breakpoint
ALTER TABLE "products" DROP COLUMN "version";--> statement-breakpoint
ALTER TABLE "products" DROP COLUMN "reserved_stock";--> statement-breakpoint
ALTER TABLE "products" DROP COLUMN "stock_quantity";--> statement-breakpoint
DROP INDEX "stock_movements_sku_idx";--> statement-breakpoint
DROP INDEX "stock_reservations_active_sku_idx";--> statement-breakpoint
ALTER TABLE "stock_levels" ADD CONSTRAINT "stock_levels_location_locations_code_fk" FOREIGN KEY ("location") REFERENCES "public"."locations"("code") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "stock_levels" ADD CONSTRAINT "stock_levels_product_id_products_product_id_fk" FOREIGN KEY ("product_id") REFERENCES "public"."products"("product_id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "stock_levels" ADD CONSTRAINT "stock_levels_variant_id_product_variants_variant_id_fk" FOREIGN KEY ("variant_id") REFERENCES "public"."product_variants"("variant_id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "transfers" ADD CONSTRAINT "transfers_product_id_products_product_id_fk" FOREIGN KEY ("product_id") REFERENCES "public"."products"("product_id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "transfers" ADD CONSTRAINT "transfers_variant_id_product_variants_variant_id_fk" FOREIGN KEY ("variant_id") REFERENCES "public"."product_variants"("variant_id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "transfers" ADD CONSTRAINT "transfers_from_location_locations_code_fk" FOREIGN KEY ("from_location") REFERENCES "public"."locations"("code") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "transfers" ADD CONSTRAINT "transfers_to_location_locations_code_fk" FOREIGN KEY ("to_location") REFERENCES "public"."locations"("code") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "stock_levels_product_idx" ON "stock_levels" USING btree ("product_id");--> statement-breakpoint
CREATE INDEX "stock_levels_variant_idx" ON "stock_levels" USING btree ("variant_id");--> statement-breakpoint
CREATE INDEX "transfers_in_transit_idx" ON "transfers" USING btree ("sku","to_location") WHERE status = 'in_transit';--> statement-breakpoint
ALTER TABLE "stock_movements" ADD CONSTRAINT "stock_movements_location_locations_code_fk" FOREIGN KEY ("location") REFERENCES "public"."locations"("code") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "stock_movements" ADD CONSTRAINT "stock_movements_transfer_id_transfers_transfer_id_fk" FOREIGN KEY ("transfer_id") REFERENCES "public"."transfers"("transfer_id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "stock_reservations" ADD CONSTRAINT "stock_reservations_location_locations_code_fk" FOREIGN KEY ("location") REFERENCES "public"."locations"("code") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "stock_movements_transfer_idx" ON "stock_movements" USING btree ("transfer_id");--> statement-breakpoint
CREATE INDEX "stock_movements_sku_idx" ON "stock_movements" USING btree ("sku","location");--> statement-breakpoint
CREATE INDEX "stock_reservations_active_sku_idx" ON "stock_reservations" USING btree ("sku","location") WHERE status = 'active';--> statement-breakpoint
CREATE VIEW "public"."stock_items" AS (
  SELECT c.product_id, c.variant_id, c.sku, c.name, c.price,
         coalesce(t.stock_quantity, 0) AS stock_quantity, coalesce(t.reserved_stock, 0) AS reserved_stock,
         coalesce(t.incoming, 0) AS incoming, coalesce(t.available, 0) AS available,
         coalesce(t.version, 0) AS version, coalesce(t.available, 0) > 0 AS in_stock,
         coalesce(t.locations, 0) AS locations, greatest(c.updated_at, t.updated_at) AS updated_at
    FROM (SELECT p.product_id, NULL::uuid AS variant_id, p.sku, p.name, p.price, p.updated_at
            FROM products p
           WHERE NOT EXISTS (SELECT 1 FROM product_variants v WHERE v.product_id = p.product_id)
          UNION ALL
          SELECT v.product_id, v.variant_id, v.sku, v.name, v.price, v.updated_at
            FROM product_variants v) c
    LEFT JOIN LATERAL (
          SELECT sum(l.stock_quantity)::int AS stock_quantity, sum(l.reserved_stock)::int AS reserved_stock,
                 sum(l.incoming)::int AS incoming,
                 (coalesce(sum(greatest(l.stock_quantity - l.reserved_stock, 0)) FILTER (WHERE loc.active), 0))::int AS available,
                 sum(l.version)::int AS version, count(*)::int AS locations, max(l.updated_at) AS updated_at
            FROM stock_levels l JOIN locations loc ON loc.code = l.location
           WHERE l.sku = c.sku) t ON true);
