CREATE SEQUENCE "public"."stock_listeners_live" INCREMENT BY 1 MINVALUE 0 MAXVALUE 9223372036854775807 START WITH 0 CACHE 1;--> statement-breakpoint
CREATE TABLE "stock_listeners" (
	"listener_id" bigserial PRIMARY KEY NOT NULL,
	"pid" integer NOT NULL,
	"backend_start" timestamp with time zone NOT NULL,
	"application" text NOT NULL,
	"registered_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
-- A token revoked, deleted, renamed or given another role ends its open event streams:
-- the notification goes on the stock channel, so a listener hears it in commit order
-- among the stock changes (src/engine/stock-events.ts, STOCK_CHANNEL).
CREATE FUNCTION "stockctl_token_changed"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('stockctl_stock', json_build_object('token', OLD.name)::text);
  RETURN NULL;
END
$$;--> statement-breakpoint
CREATE TRIGGER "api_tokens_changed" AFTER UPDATE OF "revoked_at", "role", "token_hash", "name" OR DELETE ON "api_tokens"
  FOR EACH ROW EXECUTE FUNCTION "stockctl_token_changed"();
