// A real OpenID Connect provider (panva/oidc-provider) for the tests in tests/auth/external.
//
//   node server.mjs '<json config>'
//
// config: {"port", "clients": [{client_id, client_secret, redirect_uris}],
//          "accounts": {"<id>": {email, email_verified, name, preferred_username}}}
// Its own development interactions (a login form taking any password, then a consent form)
// are what the tests drive, over HTTP and in the browser. Loopback only; never for production.
import Provider from "oidc-provider";

const config = JSON.parse(process.argv[2]);
const issuer = `http://127.0.0.1:${config.port}`;
const accounts = config.accounts ?? {};

const provider = new Provider(issuer, {
  clients: config.clients.map((client) => ({
    grant_types: ["authorization_code"],
    response_types: ["code"],
    token_endpoint_auth_method: "client_secret_basic",
    ...client,
  })),
  // PKCE is required of every client here, so the relying party's S256 is really checked.
  pkce: { required: () => true },
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name", "preferred_username"],
  },
  // Like Google and Kakao: the scope's claims go into the ID token itself.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
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
