// Brotli (quality 11) and gzip (level 9) copies of the hydration bundle and stylesheet, next to
// each file (`roundhouse.wasm.br`, `.gz`): the server sends them as they are to browsers that
// accept them (`tower_http` ServeDir, `server/src/lib.rs`), so no request pays for compression.
// Skips a file whose copies are newer than it. Usage: node scripts/precompress.mjs FILE…
import { brotliCompressSync, gzipSync, constants } from 'node:zlib';
import { readFileSync, writeFileSync, statSync, existsSync } from 'node:fs';

for (const file of process.argv.slice(2)) {
  if (!existsSync(file)) continue;
  const source = statSync(file).mtimeMs;
  const fresh = (copy) => existsSync(copy) && statSync(copy).mtimeMs >= source;
  if (fresh(`${file}.br`) && fresh(`${file}.gz`)) continue;
  const bytes = readFileSync(file);
  const br = brotliCompressSync(bytes, {
    params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: bytes.length },
  });
  writeFileSync(`${file}.br`, br);
  writeFileSync(`${file}.gz`, gzipSync(bytes, { level: 9 }));
  console.log(`${file}: ${bytes.length} bytes, brotli ${br.length}, gzip ${statSync(`${file}.gz`).size}`);
}
