// The app flow of tests/gateway/legacy_flow.py with a JavaScript client of Chroma 0.4-0.6's
// years: npm chromadb 1.10 (installed as chromadb-1; it speaks /api/v2) or 1.8 (chromadb-18;
// /api/v1, with tenant and database parameters). Each step's outcome, as one JSON line.
// usage: node legacy_flow.mjs URL TOKEN [PACKAGE]
const [url, token, pkg = 'chromadb-1'] = process.argv.slice(2);
const { ChromaClient } = await import(pkg);
const client = new ChromaClient({ path: url, fetchOptions: { headers: { Authorization: `Bearer ${token}` } } });
const NAME = 'legacy-flow';
const out = { version: pkg };
// 1.10 lists names, 1.8 collections.
const names = (listed) => listed.map((c) => (typeof c === 'string' ? c : c.name)).filter((n) => n.startsWith(NAME)).sort();
const none = { generate: async () => { throw new Error('vectors come with the records'); } };

// A GetResult or QueryResult as the Python flow writes it (the same keys, no 'included').
function plain(value) {
  if (value === undefined) return null;
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === 'object') {
    if (typeof value.name === 'string' && 'metadata' in value && 'id' in value) {
      return { name: value.name, metadata: value.metadata ?? null };
    }
    const kept = {};
    for (const [k, v] of Object.entries(value)) {
      if (!['included', 'include', 'data', 'uris'].includes(k)) kept[k] = plain(v);
    }
    return kept;
  }
  return value;
}

async function step(name, fn) {
  try {
    const found = await fn();
    out[name] = { result: plain(found) };
    return found;
  } catch (e) {
    out[name] = { error: e?.name ?? 'Error', text: String(e?.message ?? e).slice(0, 200) };
    return null;
  }
}

await step('heartbeat', async () => (await client.heartbeat()) > 0);
for (const n of [NAME, `${NAME}-renamed`]) {
  try { await client.deleteCollection({ name: n }); } catch { /* not there */ }
}
await step('create', () => client.createCollection({ name: NAME, metadata: { 'hnsw:space': 'cosine', team: 'a' }, embeddingFunction: none }));
await step('get_or_create', () => client.getOrCreateCollection({ name: NAME, embeddingFunction: none }));
const col = await step('get', () => client.getCollection({ name: NAME, embeddingFunction: none }));
await step('list', async () => names(await client.listCollections()));
if (col) {
  const vectors = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.7, 0.7, 0.1], [0.2, 0.1, 0.9]];
  const metadatas = [['x', 1], ['y', 2], ['x', 3], ['z', 4]].map(([source, k]) => ({ source, k }));
  await step('add', async () => { await col.add({ ids: ['a', 'b', 'c', 'd'], embeddings: vectors, metadatas, documents: ['alpha one', 'beta two', 'gamma three', 'delta four'] }); return null; });
  await step('count', () => col.count());
  await step('get_ids', () => col.get({ ids: ['b', 'a'], include: ['documents', 'metadatas', 'embeddings'] }));
  await step('get_where', () => col.get({ where: { k: { $gte: 2 } } }));
  await step('get_where_document', () => col.get({ whereDocument: { $contains: 'two' } }));
  await step('get_page', () => col.get({ limit: 2, offset: 1 }));
  await step('peek', () => col.peek());
  await step('query', () => col.query({ queryEmbeddings: [[1.0, 0.1, 0.0]], nResults: 3 }));
  await step('query_filtered', () => col.query({ queryEmbeddings: [[1.0, 0.1, 0.0]], nResults: 2, where: { source: 'x' }, include: ['distances', 'documents'] }));
  await step('query_two', () => col.query({ queryEmbeddings: [[0.0, 1.0, 0.0], [0.2, 0.1, 0.9]], nResults: 1 }));
  await step('update', async () => { await col.update({ ids: ['a'], embeddings: [[0.9, 0.0, 0.1]], metadatas: [{ source: 'x', k: 10 }], documents: ['alpha updated'] }); return null; });
  await step('upsert', async () => { await col.upsert({ ids: ['e', 'b'], embeddings: [[0.5, 0.5, 0.5], [0.0, 0.9, 0.1]], documents: ['e', 'b2'] }); return null; });
  await step('after_writes', () => col.get({ include: ['documents', 'metadatas'] }));
  await step('delete_ids', async () => { await col.delete({ ids: ['e'] }); return null; });
  await step('delete_where', async () => { await col.delete({ where: { source: 'z' } }); return null; });
  await step('count_after_delete', () => col.count());
  await step('modify', async () => { await col.modify({ name: `${NAME}-renamed`, metadata: { team: 'b' } }); return null; });
  await step('get_renamed', () => client.getCollection({ name: `${NAME}-renamed`, embeddingFunction: none }));
  await step('get_missing', () => client.getCollection({ name: 'no-such-collection', embeddingFunction: none }));
  await step('create_taken', () => client.createCollection({ name: `${NAME}-renamed`, embeddingFunction: none }));
  await step('delete_collection', async () => { await client.deleteCollection({ name: `${NAME}-renamed` }); return null; });
  await step('list_after', async () => names(await client.listCollections()));
}
console.log(JSON.stringify(out));
