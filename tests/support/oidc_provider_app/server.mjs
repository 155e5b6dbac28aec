// A real OpenID Connect provider (panva/oidc-provider) for the tests in tests/auth/external.
//
//   node server.mjs '<json config>'
//
// config: {"port", "clients": [{client_id, client_secret, redirect_uris}],
//          "accounts": {"<id>": {email, email_verified, name, preferred_username}},
//          "machine_clients": [{client_id, client_secret, scope}],   (optional)
//          "resource": {"audience", "scope"}}                         (optional)
// With machine_clients and a resource, it also issues RFC 9068 JWT access tokens to those
// clients by the client credentials grant: a partner's identity provider for machine clients.
// Its own development interactions (a login form taking any password, then a consent form)
// are what the tests drive, over HTTP and in the browser. Loopback only; never for production.
import Provider from "oidc-provider";

const config = JSON.parse(process.argv[2]);
const issuer = `http://127.0.0.1:${config.port}`;
const accounts = config.accounts ?? {};

const resource = config.resource;
const machineClients = (config.machine_clients ?? []).map((client) => ({
  grant_types: ["client_credentials"],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: "client_secret_basic",
  ...client,
}));
const machineFeatures = resource
  ? {
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource.audience,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: resource.scope,
          audience: resource.audience,
          accessTokenTTL: 300,
          accessTokenFormat: "jwt",
          jwt: { sign: { alg: "RS256" } },
        }),
      },
    }
  : {};

const provider = new Provider(issuer, {
  clients: [
    ...config.clients.map((client) => ({
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
      ...client,
    })),
    ...machineClients,
  ],
  // PKCE is required of every client here, so the relying party's S256 is really checked.
  pkce: { required: () => true },
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name", "preferred_username"],
  },
  // Like Google and Kakao: the scope's claims go into the ID token itself.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true }, ...machineFeatures },
  // The resource's scopes are scope values this provider knows, for its machine clients.
  ...(resource ? { scopes: ["openid", "offline_access", ...resource.scope.split(" ")] } : {}),
  cookies: { keys: ["passgate-test-provider-cookie-key"] },
  async findAccount(ctx, id) {
    const account = accounts[id] ?? { email: `${id}@example.test`, email_verified: true, name: id };
    return {
      accountId: id,
      async claims() {
        return { sub: id, ...account };
      },
    };
  },
});
// No console noise for the development-only warnings; errors still reach stderr.
provider.on("server_error", (ctx, error) => console.error("server_error", error));

provider.listen(config.port, "127.0.0.1", () => {
  console.log(JSON.stringify({ listening: issuer }));
});
