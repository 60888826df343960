#!/usr/bin/env node
// Mock Basalt REST API for the prompts tests and examples (Node, no npm packages).
//
//   node mock_basalt_api.js [--port N] [--mode MODE] [--delay-ms N] [--api-key KEY]
//
// Listens on 127.0.0.1 (port 0 = a free port) and prints the port on the first
// line of stdout. Serves GET /prompts/{slug}, /prompts/{slug}/describe and
// /prompts?featureSlug= like the Basalt API. Faults are switched by --mode or at
// run time through the control endpoints:
//   GET  /_stats[?format=lua]  request counter, per-path counts, the last request
//   POST /_control {mode, delay_ms, slug_modes: {slug: mode}, fail_times, reset_stats}
//   POST /_prompts {slug: prompt, ...}  adds or replaces prompts
//   POST /_reset                        back to the start state
//   POST /_shutdown                     exits
// Modes: ok, slow (answers after delay_ms), 404, 500, text500 (plain-text body),
// status:NNN, invalid_json (200 with a broken body), drop (closes the connection:
// a transport error), echo_auth (401 whose error text echoes the Authorization
// header, to prove clients redact it). fail_times = N drops the next N requests.
// With --api-key, requests without "Authorization: Bearer KEY" get 401.
// The server exits when its parent process goes away, so a crashed test leaves
// nothing behind.
'use strict';
const http = require('http');

function parseArgs(argv) {
  const o = { port: 0, mode: 'ok', delayMs: 0, apiKey: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i], v = argv[i + 1];
    if (a === '--port') { o.port = Number(v); i++; }
    else if (a === '--mode') { o.mode = v; i++; }
    else if (a === '--delay-ms') { o.delayMs = Number(v); i++; }
    else if (a === '--api-key') { o.apiKey = v; i++; }
    else { process.stderr.write(`unknown argument ${a}\n`); process.exit(2); }
  }
  return o;
}

const opts = parseArgs(process.argv.slice(2));

function defaultPrompts() {
  const model = {
    provider: 'openai', model: 'gpt-4o-mini', version: 'latest',
    parameters: {
      temperature: 0.2, maxLength: 800, responseFormat: 'text', topP: 0.9,
      frequencyPenalty: 0, presencePenalty: 0,
      tools: { tools: [{ type: 'function', function: { name: 'search_docs' } }],
               toolChoice: { type: 'auto' } },
    },
  };
  return {
    'qa-system': {
      featureSlug: 'support', name: 'QA system', description: 'Answers support questions',
      status: 'live', tags: ['production', 'staging'], latest: '3',
      versions: {
        '1': { text: 'Q: {{ question }}', systemText: '' },
        '2': { text: 'Question: {{ question }}', systemText: 'Be brief.' },
        '3': {
          text: 'Answer the question using the context.\n' +
                '{% if context %}Context:\n{% for doc in context %}- {{ doc.title }}: {{ doc.body }}\n' +
                '{% endfor %}{% endif %}Question: {{ question }}\n',
          systemText: 'You are the support assistant of {{ company.name }}.',
        },
      },
      variables: [{ label: 'question', type: 'string' }, { label: 'context', type: 'list' },
                  { label: 'company', type: 'object' }],
      model,
    },
    greeting: {
      featureSlug: 'onboarding', name: 'Greeting', description: 'Says hello',
      status: 'live', tags: [], latest: '1',
      versions: { '1': { text: 'Hello {{ name }}!', systemText: '' } },
      variables: [{ label: 'name', type: 'string' }],
      model: { provider: 'anthropic', model: 'claude-3-5-haiku', version: '',
               parameters: { temperature: 1, maxLength: 100, responseFormat: 'text' } },
    },
    'bad-template': {
      featureSlug: 'onboarding', name: 'Bad', description: 'Uses a filter',
      status: 'draft', tags: [], latest: '1',
      versions: { '1': { text: 'Hi {{ name | upper }}', systemText: '' } },
      variables: [], model: { provider: 'openai', model: 'gpt-4o', version: '', parameters: {} },
    },
  };
}

function freshState() {
  return { mode: opts.mode, delayMs: opts.delayMs, slugModes: {}, failTimes: 0,
           prompts: defaultPrompts(), requests: 0, byPath: {}, last: null };
}
let state = freshState();

function send(res, status, body, type) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': type || 'application/json',
                          'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function readBody(req) {
  return new Promise((resolve) => {
    let data = '';
    req.on('data', (c) => { data += c; });
    req.on('end', () => {
      try { resolve(data ? JSON.parse(data) : {}); } catch (e) { resolve({}); }
    });
  });
}

// A Lua table constructor for /_stats?format=lua (tests have no JSON parser).
function toLua(v) {
  if (v === null || v === undefined) return 'nil';
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return '{' + v.map(toLua).join(',') + '}';
  return '{' + Object.keys(v).map((k) => `[${JSON.stringify(k)}]=${toLua(v[k])}`).join(',') + '}';
}

function tagsOf(p) {
  return Array.isArray(p.tags) ? p.tags : [];
}

function describeItem(slug, p, withVariables) {
  const o = { slug, status: p.status, name: p.name, description: p.description,
              availableVersions: Object.keys(p.versions), availableTags: tagsOf(p) };
  if (withVariables) o.variables = p.variables;
  return o;
}

function route(req, res, url) {
  const parts = url.pathname.split('/').filter(Boolean);
  if (parts[0] !== 'prompts' || req.method !== 'GET') return send(res, 404, { error: 'No such route' });
  if (parts.length === 1) {
    const fs = url.searchParams.get('featureSlug');
    const list = Object.keys(state.prompts)
      .filter((s) => !fs || state.prompts[s].featureSlug === fs)
      .map((s) => describeItem(s, state.prompts[s], false));
    return send(res, 200, { prompts: list });
  }
  const slug = decodeURIComponent(parts[1]);
  const p = state.prompts[slug];
  if (!p) return send(res, 404, { error: `Prompt '${slug}' not found` });
  const version = url.searchParams.get('version');
  const tag = url.searchParams.get('tag');
  if (version && !p.versions[version]) return send(res, 404, { error: `Version ${version} not found` });
  if (tag && !tagsOf(p).includes(tag)) return send(res, 404, { error: `Tag ${tag} not found` });
  if (parts[2] === 'describe') return send(res, 200, { prompt: describeItem(slug, p, true) });
  if (parts.length !== 2) return send(res, 404, { error: 'No such route' });
  const v = version || p.latest;
  const body = { slug, version: v, text: p.versions[v].text,
                 systemText: p.versions[v].systemText || '', model: p.model || {} };
  if (tag) body.tag = tag;
  return send(res, 200, { prompt: body, warning: 'mock server' });
}

async function control(req, res, url) {
  const path = url.pathname;
  if (path === '/_stats') {
    const s = { requests: state.requests, by_path: state.byPath, last: state.last };
    if (url.searchParams.get('format') === 'lua') return send(res, 200, 'return ' + toLua(s), 'text/plain');
    return send(res, 200, s);
  }
  const body = await readBody(req);
  if (path === '/_control') {
    if (body.reset_stats) { state.requests = 0; state.byPath = {}; state.last = null; }
    if (body.mode !== undefined) state.mode = body.mode;
    if (body.delay_ms !== undefined) state.delayMs = Number(body.delay_ms);
    if (body.slug_modes !== undefined) state.slugModes = body.slug_modes;
    if (body.fail_times !== undefined) state.failTimes = Number(body.fail_times);
    return send(res, 200, { ok: true });
  }
  if (path === '/_prompts') {
    Object.assign(state.prompts, body);
    return send(res, 200, { ok: true });
  }
  if (path === '/_reset') { state = freshState(); return send(res, 200, { ok: true }); }
  if (path === '/_shutdown') {
    send(res, 200, { ok: true });
    setImmediate(() => process.exit(0));
    return undefined;
  }
  return send(res, 404, { error: 'unknown control path' });
}

function handle(req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname.startsWith('/_')) return control(req, res, url);
  state.requests++;
  state.byPath[url.pathname] = (state.byPath[url.pathname] || 0) + 1;
  state.last = { method: req.method, path: url.pathname, query: url.search, headers: req.headers };
  if (state.failTimes > 0) { state.failTimes--; req.socket.destroy(); return undefined; }
  if (opts.apiKey && req.headers.authorization !== `Bearer ${opts.apiKey}`)
    return send(res, 401, { error: 'Invalid API key' });
  const parts = url.pathname.split('/').filter(Boolean);
  const mode = (parts[1] && state.slugModes[decodeURIComponent(parts[1])]) || state.mode;
  if (mode === 'ok') return route(req, res, url);
  if (mode === 'slow') { setTimeout(() => route(req, res, url), state.delayMs); return undefined; }
  if (mode === '404') return send(res, 404, { error: 'Prompt not found' });
  if (mode === '500') return send(res, 500, { error: 'Internal server error' });
  if (mode === 'text500') return send(res, 500, 'upstream exploded', 'text/plain');
  if (mode === 'invalid_json') return send(res, 200, '{"prompt": {not json', 'application/json');
  if (mode === 'drop') { req.socket.destroy(); return undefined; }
  if (mode === 'echo_auth')
    return send(res, 401, { error: `rejected credentials: ${req.headers.authorization}` });
  const m = /^status:(\d{3})$/.exec(mode);
  if (m) return send(res, Number(m[1]), { errors: [`mock status ${m[1]}`] });
  return send(res, 500, { error: `unknown mock mode ${mode}` });
}

const server = http.createServer((req, res) => {
  Promise.resolve(handle(req, res)).catch((e) => send(res, 500, { error: String(e) }));
});
server.keepAliveTimeout = 60000;
server.listen(opts.port, '127.0.0.1', () => {
  process.stdout.write(`${server.address().port}\n`);
});

// Exit with the parent (a test that crashed must not leave a server running).
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.exit(0);
  try { process.kill(parent, 0); } catch (e) { process.exit(0); }
}, 500).unref();
