// What the e2e OAuth clients share: the official TypeScript SDK loaded from the test's npm cache, and an
// OAuthClientProvider that keeps everything in memory, as a fresh client would.
import { join } from "node:path";
import { pathToFileURL } from "node:url";

// sdk imports a module of the SDK installed under sdkDir, such as "client/index.js".
export const sdk = (sdkDir, p) =>
  import(pathToFileURL(join(sdkDir, "node_modules/@modelcontextprotocol/sdk/dist/esm", p)).href);

// Provider registers the client with grantTypes and remembers the last authorization URL it was sent to.
export class Provider {
  saved = {};
  redirected = undefined;
  constructor(redirectUrl, clientName, grantTypes) {
    this.redirect = redirectUrl;
    this.metadata = {
      client_name: clientName,
      redirect_uris: [redirectUrl],
      grant_types: grantTypes,
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  get redirectUrl() { return this.redirect; }
  get clientMetadata() { return this.metadata; }
  clientInformation() { return this.saved.client; }
  saveClientInformation(info) { this.saved.client = info; }
  tokens() { return this.saved.tokens; }
  saveTokens(tokens) { this.saved.tokens = tokens; }
  saveCodeVerifier(v) { this.saved.verifier = v; }
  codeVerifier() { return this.saved.verifier; }
  invalidateCredentials(scope) {
    if (scope === "all" || scope === "client") delete this.saved.client;
    if (scope === "all" || scope === "tokens") delete this.saved.tokens;
  }
  redirectToAuthorization(url) { this.redirected = url.href; }
}
