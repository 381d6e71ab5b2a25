// A minimal web service on Node's standard library: answers on $PORT, with /health.
const http = require('node:http');

const port = Number(process.env.PORT || 3000);
http.createServer((req, res) => {
  console.log(`request: ${req.method} ${req.url}`);
  if (req.url === '/health') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    return res.end('ok');
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ hello: process.env.GREETING || 'world', path: req.url }));
}).listen(port, () => console.log(`listening on ${port}`));
