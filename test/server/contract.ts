/**
 * The contract between `stockctl serve` and its OpenAPI document: every response a server
 * test receives through `api()` (test/server/_server.ts) is checked against the document
 * that same server publishes at /openapi.json: the status is declared on the operation,
 * the media type is one the status declares, the body matches its schema (problem
 * documents with no member the Problem schema does not list), and the headers it carries
 * are declared. A test that meets an undeclared answer fails, naming it.
 */
import { Ajv, type ValidateFunction } from 'ajv';
import * as formats from 'ajv-formats';

// ajv-formats is CommonJS: its plugin is the module's default export (under ESM, one level down).
type FormatsPlugin = (ajv: Ajv) => Ajv;
const addFormats: FormatsPlugin = ((formats as unknown as { default: { default?: FormatsPlugin } & FormatsPlugin }).default.default ??
  (formats as unknown as { default: FormatsPlugin }).default) as FormatsPlugin;

export interface ObservedResponse {
  status: number;
  headers: Headers;
  text: string;
}

interface MediaType {
  schema?: unknown;
}
interface ResponseObject {
  headers?: Record<string, unknown>;
  content?: Record<string, MediaType>;
}
interface Operation {
  operationId?: string;
  responses: Record<string, ResponseObject>;
}
interface Document {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, unknown> };
}

/** Headers the server sets on purpose: each must be declared where it is sent. */
const DECLARED_HEADERS = ['x-request-id', 'location', 'link', 'retry-after', 'www-authenticate', 'idempotent-replayed'];
/** What the router itself answers for a path or method no operation has (documented in info.description). */
const ROUTER_ANSWERS: Record<number, string[]> = { 404: ['route_not_found'], 405: ['method_not_allowed'], 400: ['malformed_url'], 414: ['uri_too_long'] };

const essence = (mediaType: string) => mediaType.split(';')[0].trim().toLowerCase();
const parameters = (mediaType: string) =>
  mediaType
    .split(';')
    .slice(1)
    .map((p) => p.trim().toLowerCase())
    .filter((p) => p && !p.startsWith('charset='));

export class ContractChecker {
  private readonly ajv: Ajv;
  private readonly validators = new Map<unknown, ValidateFunction>();
  private readonly templates: { template: string; pattern: RegExp; params: number }[];
  readonly strictProblem: ValidateFunction;

  constructor(readonly doc: Document) {
    this.ajv = new Ajv({ strict: false, allErrors: true });
    addFormats(this.ajv);
    // OpenAPI 3.0's components, under a name the rewritten $refs point at.
    this.ajv.addSchema({ $id: 'openapi.json', components: rewriteRefs(doc.components) });
    this.templates = Object.keys(doc.paths)
      .map((template) => ({
        template,
        pattern: new RegExp(`^${template.replace(/[.]/g, '\\.').replace(/\{[^}]+\}/g, '[^/]+')}$`),
        params: (template.match(/\{/g) ?? []).length,
      }))
      // A static path wins over a template (/stock/events before /stock/{sku}).
      .sort((a, b) => a.params - b.params);
    const problem = doc.components.schemas.Problem as Record<string, unknown>;
    this.strictProblem = this.ajv.compile({ ...(rewriteRefs(problem) as object), additionalProperties: false });
  }

  private validator(schema: unknown): ValidateFunction {
    const known = this.validators.get(schema);
    if (known) return known;
    const compiled = this.ajv.compile(rewriteRefs(schema) as object);
    this.validators.set(schema, compiled);
    return compiled;
  }

  /** The operation of a request, and the path template it matched. */
  operation(method: string, path: string): { template: string; op?: Operation } | undefined {
    const bare = path.split('?')[0];
    const match = this.templates.find((t) => t.pattern.test(bare));
    if (!match) return undefined;
    return { template: match.template, op: this.doc.paths[match.template][method.toLowerCase()] };
  }

  /** What is wrong with this response, as sentences; empty when it is what the document says. */
  check(method: string, path: string, res: ObservedResponse): string[] {
    const where = `${method} ${path} → ${res.status}`;
    const problems: string[] = [];
    if (method === 'HEAD') return problems; // HEAD routes are not listed; their GET is
    const found = this.operation(method, path);
    const contentType = res.headers.get('content-type') ?? '';
    const body = parse(res.text, contentType);
    if (!res.headers.get('x-request-id')) problems.push(`${where}: no X-Request-Id header`);
    // A CORS preflight (serve --cors-origin) is answered before routing, with no body.
    if (method === 'OPTIONS' && res.status === 204 && res.headers.has('access-control-allow-origin')) return problems;
    if (!found?.op) {
      // No operation: only the router's own answers, as problem documents.
      const codes = ROUTER_ANSWERS[res.status];
      const code = (body as { code?: string } | undefined)?.code;
      if (!codes || !code || !codes.includes(code)) problems.push(`${where}: no operation ${method} ${found?.template ?? path}, and not a router answer (${code ?? res.text.slice(0, 80)})`);
      if (res.status === 405 && !res.headers.get('allow')) problems.push(`${where}: 405 without Allow`);
      if (body !== undefined && !this.strictProblem(body)) problems.push(`${where}: problem document not as declared: ${this.ajv.errorsText(this.strictProblem.errors)}`);
      return problems;
    }
    const { op, template } = found;
    const declared = op.responses[String(res.status)];
    if (!declared) {
      problems.push(`${where}: status ${res.status} is not declared on ${method} ${template} (${op.operationId}); declared: ${Object.keys(op.responses).join(', ')}`);
      return problems;
    }
    const declaredHeaders = new Set(Object.keys(declared.headers ?? {}).map((h) => h.toLowerCase()));
    for (const name of DECLARED_HEADERS) {
      if (res.headers.has(name) && !declaredHeaders.has(name)) problems.push(`${where}: header ${name} is sent but not declared`);
    }
    const media = Object.keys(declared.content ?? {});
    const mediaKey = media.find((m) => essence(m) === essence(contentType));
    if (media.length > 0 && !mediaKey) {
      problems.push(`${where}: content type ${contentType || '(none)'} is not declared (declared: ${media.join(', ')})`);
      return problems;
    }
    if (mediaKey) {
      const missing = parameters(mediaKey).filter((p) => !parameters(contentType).includes(p));
      if (missing.length > 0) problems.push(`${where}: content type ${contentType} lacks ${missing.join('; ')} (declared ${mediaKey})`);
      const schema = declared.content![mediaKey].schema;
      if (schema && body !== undefined) {
        const validate = essence(mediaKey) === 'application/problem+json' ? this.strictProblem : this.validator(schema);
        if (!validate(body)) problems.push(`${where}: body does not match the declared schema: ${this.ajv.errorsText(validate.errors)}`);
      }
    }
    return problems;
  }
}

function parse(text: string, contentType: string): unknown {
  if (!/json/.test(contentType)) return text.length > 0 ? text : undefined;
  try {
    return JSON.parse(text);
  } catch {
    return Symbol('not JSON');
  }
}

/** `#/components/...` → `openapi.json#/components/...`, so that every compiled schema finds the shared ones. */
function rewriteRefs(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(rewriteRefs);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => [k, k === '$ref' && typeof v === 'string' && v.startsWith('#/') ? `openapi.json${v}` : rewriteRefs(v)]),
  );
}

/** The document is made from the code alone (no flag or database changes it): one fetch serves every server of a test file. */
let shared: Promise<ContractChecker | undefined> | undefined;

/** The checker, from the first server that serves its document; undefined while none has (a server stopping). */
export function checkerFor(url: string): Promise<ContractChecker | undefined> {
  shared ??= fetch(`${url}/openapi.json`)
    .then(async (res) => (res.status === 200 ? new ContractChecker((await res.json()) as Document) : undefined))
    .catch(() => undefined)
    .then((checker) => {
      if (!checker) shared = undefined; // ask the next server
      return checker;
    });
  return shared;
}

/** Fails (naming every difference) when a response is not what the server's document declares. */
export async function expectConforms(url: string, method: string, path: string, res: ObservedResponse): Promise<void> {
  const checker = await checkerFor(url);
  if (!checker) return;
  const problems = checker.check(method.toUpperCase(), path, res);
  if (problems.length > 0) throw new Error(`The response is not what /openapi.json declares:\n${problems.join('\n')}`);
}
