// `.proto?raw` imports yield the file's text. vitest (vite) handles `?raw` natively; scripts/bundle.mjs has an esbuild
// plugin that does the same. This lets the .proto files stay the single source, with no generated code committed.
declare module '*.proto?raw' {
  const text: string;
  export default text;
}
