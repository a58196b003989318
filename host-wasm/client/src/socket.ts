import { SynapError, closedError } from './errors.js';
import { refusal } from './transport.js';

/** The part of a WebSocket the client uses, the same over the global WebSocket and `ws`. */
export interface Socket {
  /** Sends one text frame; false when the socket is no longer open. */
  send(text: string): boolean;
  /** Closes the socket (normal closure). */
  close(): void;
}

/** Callbacks of an open socket. */
export interface SocketHandlers {
  /** One text frame from the server. */
  message(text: string): void;
  /** The socket closed; `clean` when it was a close handshake rather than a lost connection. */
  closed(clean: boolean, reason: string): void;
}

interface BrowserSocketCtor {
  new (url: string): WebSocket;
}

/**
 * Opens a WebSocket to `url`. The global `WebSocket` (browsers, Node 22+) cannot send headers,
 * so the API key travels as `?api_key=` (the server accepts it on WebSocket routes only);
 * elsewhere the `ws` package sends it as a bearer header, and an HTTP refusal of the upgrade
 * becomes a `SynapError` with the server's code and status.
 */
export async function openSocket(url: string, apiKey: string | undefined, h: SocketHandlers): Promise<Socket> {
  const Global = (globalThis as { WebSocket?: BrowserSocketCtor }).WebSocket;
  if (Global !== undefined) return openGlobal(Global, url, apiKey, h);
  return openWs(url, apiKey, h);
}

function openGlobal(Ctor: BrowserSocketCtor, url: string, apiKey: string | undefined, h: SocketHandlers): Promise<Socket> {
  const target = apiKey === undefined ? url : `${url}${url.includes('?') ? '&' : '?'}api_key=${encodeURIComponent(apiKey)}`;
  return new Promise((resolve, reject) => {
    let open = false;
    const ws = new Ctor(target);
    ws.addEventListener('open', () => {
      open = true;
      resolve({
        send: (text) => {
          if (ws.readyState !== 1) return false;
          ws.send(text);
          return true;
        },
        close: () => ws.close(1000),
      });
    });
    ws.addEventListener('message', (ev: MessageEvent) => {
      if (typeof ev.data === 'string') h.message(ev.data);
    });
    // A failed upgrade fires `error` and then `close`; the close handler reports it.
    ws.addEventListener('error', () => undefined);
    ws.addEventListener('close', (ev: CloseEvent) => {
      if (!open) reject(new SynapError(`WebSocket ${url} refused (close ${ev.code})`, 'websocket', 0));
      else h.closed(ev.code === 1000, ev.reason);
    });
  });
}

async function openWs(url: string, apiKey: string | undefined, h: SocketHandlers): Promise<Socket> {
  let WS: typeof import('ws').WebSocket;
  try {
    WS = (await import('ws')).WebSocket;
  } catch {
    throw new SynapError('no global WebSocket and the ws package is not installed', 'websocket', 0);
  }
  const headers: Record<string, string> = {};
  if (apiKey !== undefined) headers.authorization = `Bearer ${apiKey}`;
  return new Promise((resolve, reject) => {
    let open = false;
    let refused = false;
    const ws = new WS(url, { headers, maxPayload: 64 << 20 });
    ws.on('unexpected-response', (_req, res) => {
      // Read the refusal's JSON body (bounded) for its code, then give up on the socket.
      refused = true;
      let body = '';
      const done = (): void => {
        reject(refusal(res.statusCode ?? 0, body));
        ws.terminate();
      };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (body.length < 64 * 1024) body += chunk;
      });
      res.on('end', done);
      res.on('error', done);
    });
    ws.on('open', () => {
      open = true;
      resolve({
        send: (text) => {
          if (ws.readyState !== WS.OPEN) return false;
          ws.send(text);
          return true;
        },
        close: () => ws.close(1000),
      });
    });
    ws.on('message', (data, isBinary) => {
      if (!isBinary) h.message(data.toString());
    });
    ws.on('error', (e: Error) => {
      if (!open && !refused) reject(new SynapError(`WebSocket ${url}: ${e.message}`, 'websocket', 0));
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (open) h.closed(code === 1000, reason.toString());
      else if (!refused) reject(closedError(`WebSocket ${url}`));
    });
  });
}
