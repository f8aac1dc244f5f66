// The npm chromadb v3 client against the gateway.
// usage: node chroma_client.mjs URL HEADER_NAME HEADER_VALUE COLLECTION
import { ChromaClient } from 'chromadb';

const [url, headerName, headerValue, name] = process.argv.slice(2);
const u = new URL(url);
const client = new ChromaClient({
  host: u.hostname,
  port: Number(u.port),
  ssl: u.protocol === 'https:',
  headers: { [headerName]: headerValue },
});
const out = {};
try {
  out.heartbeat = typeof (await client.heartbeat()) === 'number';
  const col = await client.getOrCreateCollection({ name, embeddingFunction: null });
  await col.upsert({ ids: ['j1', 'j2'], embeddings: [[1, 0], [0, 1]] });
  out.count = await col.count();
  const q = await col.query({ queryEmbeddings: [[1, 0.1]], nResults: 1 });
  out.query = q.ids;
} catch (e) {
  out.error = e?.name ?? String(e);
  out.message = e?.message ?? '';
}
console.log(JSON.stringify(out));
