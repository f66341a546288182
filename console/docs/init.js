// Swagger UI over the gateway's own /openapi.json; "Authorize" takes an API key (x-api-key).
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: false,
  tryItOutEnabled: false,
});
