// OHIF's prebuilt dist/ on loopback, with /dicom-web and /wado passed to Orthanc (same origin).
// Node standard library only. Usage: node serve.js DIST_DIR APP_CONFIG_JS ORTHANC_URL
// Listens on a free 127.0.0.1 port and prints "listening <port>" once ready.
'use strict';
const http = require('http');
const fs = require('fs');
const path = require('path');

const [dist, configFile, orthanc] = process.argv.slice(2);
const target = new URL(orthanc);
const types = {
  '.html': 'text/html', '.js': 'application/javascript', '.mjs': 'application/javascript',
  '.css': 'text/css', '.wasm': 'application/wasm', '.json': 'application/json',
  '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon', '.woff2': 'font/woff2',
  '.woff': 'font/woff',
};
// Cross-origin isolation: OHIF's SharedArrayBuffer decoders need it.
const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};
const root = path.resolve(dist);

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname.startsWith('/dicom-web') || url.pathname.startsWith('/wado')) {
    const upstream = http.request(
      { host: target.hostname, port: +target.port, path: req.url, method: req.method, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode, { ...answer.headers, ...isolation });
        answer.pipe(res);
      },
    );
    upstream.on('error', (err) => { res.writeHead(502); res.end(String(err)); });
    req.pipe(upstream);
    return;
  }
  if (url.pathname === '/app-config.js') {
    res.writeHead(200, { 'Content-Type': 'application/javascript', ...isolation });
    fs.createReadStream(configFile).pipe(res);
    return;
  }
  let file = path.join(root, decodeURIComponent(url.pathname));
  if (!file.startsWith(root) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
    file = path.join(root, 'index.html'); // the app's routes
  }
  res.writeHead(200, { 'Content-Type': types[path.extname(file)] || 'application/octet-stream', ...isolation });
  fs.createReadStream(file).pipe(res);
});
server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
