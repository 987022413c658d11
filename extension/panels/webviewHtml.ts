/**
 * The HTML shell of every webview page: a strict Content-Security-Policy (nothing by default;
 * scripts only with this load's nonce; styles and images only from the extension's own
 * resources), the page's stylesheets and its one bundled script. Pure, so the CSP is unit-tested.
 */
import { randomBytes } from 'node:crypto';

export interface PageShell {
  title: string;
  /** `webview.cspSource`: the origin VS Code serves local resources from. */
  cspSource: string;
  /** `webview.asWebviewUri(...)` strings. */
  scriptUri: string;
  styleUris: string[];
  nonce?: string;
}

export function makeNonce(): string {
  return randomBytes(18).toString('base64').replace(/[^A-Za-z0-9]/g, '');
}

export function contentSecurityPolicy(cspSource: string, nonce: string): string {
  return [
    "default-src 'none'",
    `script-src 'nonce-${nonce}'`,
    `style-src ${cspSource}`,
    `img-src ${cspSource} data:`,
    `font-src ${cspSource}`,
    "connect-src 'none'",
    "form-action 'none'",
    "base-uri 'none'",
  ].join('; ');
}

const escapeAttr = (s: string) => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function pageHtml(p: PageShell): string {
  const nonce = p.nonce ?? makeNonce();
  const links = p.styleUris.map((u) => `<link rel="stylesheet" href="${escapeAttr(u)}">`).join('\n  ');
  return `<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <meta http-equiv="Content-Security-Policy" content="${escapeAttr(contentSecurityPolicy(p.cspSource, nonce))}">
  <meta name="viewport" content="width=device-width, initial-scale=1.0">
  <title>${escapeAttr(p.title)}</title>
  ${links}
</head>
<body>
  <div id="app"></div>
  <script nonce="${nonce}" src="${escapeAttr(p.scriptUri)}"></script>
</body>
</html>
`;
}
