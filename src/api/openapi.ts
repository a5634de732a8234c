/** OpenAPI 3.1 description of the approval HTTP API (served at /api/v1/openapi.json). */
const error = {
  description: "An error",
  content: {
    "application/json": {
      schema: {
        type: "object",
        properties: {
          error: {
            type: "object",
            properties: {
              code: { type: "integer" },
              message: { type: "string" },
              reason: {
                type: "string",
                description:
                  "Why a decision was refused (self, already, expired, not-approver, needs-rbac, covered-subject, ...): the same code whatever path the decision took",
              },
            },
          },
        },
      },
    },
  },
};
const namePath = [
  { name: "namespace", in: "path", required: true, schema: { type: "string" } },
  { name: "name", in: "path", required: true, schema: { type: "string" } },
];
const view = { $ref: "#/components/schemas/ApprovalRequest" };
const phases = ["Pending", "Approved", "Denied", "Expired", "Consumed", "Revoked"];
const decision = (verb: "approve" | "deny" | "revoke") => ({
  summary:
    verb === "revoke"
      ? "Revoke an Approved, unused ApprovalRequest as the caller"
      : `${verb === "approve" ? "Approve" : "Deny"} an ApprovalRequest as the caller`,
  description:
    verb === "revoke"
      ? "Same rules as kubectl approvals revoke: the caller is not the requester, matches the request's approver rules, holds RBAC verb revoke on approvalrequests.countersign.io in the namespace, and the request is Approved, unexpired and not yet used; a reason is required. Against a parallel retry of the action exactly one wins: 409 when the approval was used first."
      : "Same rules as kubectl " +
        verb +
        ": the caller is not the requester, matches the request's approver rules, holds RBAC verb " +
        verb +
        " on approvalrequests.countersign.io in the namespace, and the request is Pending and unexpired." +
        (verb === "approve"
          ? ' With "breakGlass": true, a member of the request\'s break-glass groups approves it alone whatever requiredApprovals says (reason of at least 20 characters; never the requester); it raises a Warning Event, notifies every route and is marked break-glass in the audit trail.'
          : ""),
  parameters: namePath,
  requestBody: {
    required: verb === "revoke",
    content: {
      "application/json": {
        schema: {
          type: "object",
          ...(verb === "revoke" ? { required: ["reason"] } : {}),
          properties: {
            reason: { type: "string", maxLength: 1024 },
            ...(verb === "approve" ? { breakGlass: { type: "boolean", default: false } } : {}),
          },
        },
      },
    },
  },
  responses: {
    "200": {
      description: "Recorded",
      content: {
        "application/json": {
          schema: { type: "object", properties: { message: { type: "string" }, approvalRequest: view } },
        },
      },
    },
    "400": error,
    "401": error,
    "403": error,
    "404": error,
    "409": error,
  },
});

export const OPENAPI_DOCUMENT = {
  openapi: "3.1.0",
  info: {
    title: "Countersign approval API",
    version: "v1",
    description:
      "List, read, decide and revoke ApprovalRequests. Authenticate with a Kubernetes bearer token (Authorization: Bearer <token>); every call is authorized as the token's user with a SubjectAccessReview.",
  },
  servers: [{ url: "/api/v1" }],
  security: [{ kubernetesBearer: [] }],
  components: {
    securitySchemes: {
      kubernetesBearer: {
        type: "http",
        scheme: "bearer",
        description: "A Kubernetes token, checked with TokenReview",
      },
    },
    schemas: {
      ApprovalRequest: {
        type: "object",
        required: ["namespace", "name", "phase", "requester", "action", "policy", "approval", "decisions"],
        properties: {
          namespace: { type: "string" },
          name: { type: "string" },
          phase: { enum: phases },
          createdAt: { type: "string", format: "date-time" },
          requester: { type: "object" },
          action: {
            type: "object",
            description: "operation, group, version, resource, subResource, namespace, name, summary",
          },
          diff: { type: "string" },
          agentContext: {
            type: "object",
            properties: {
              reason: { type: "string" },
              prompt: { type: "string" },
              ticket: { type: "string" },
              agent: { type: "string" },
            },
          },
          policy: { type: "object" },
          approval: { type: "object" },
          decisions: { type: "array", items: { type: "object" } },
          execution: { type: "object" },
        },
      },
    },
  },
  paths: {
    "/approvalrequests": {
      get: {
        summary: "List ApprovalRequests (RBAC list, in the namespace or cluster-wide)",
        parameters: [
          { name: "namespace", in: "query", schema: { type: "string" } },
          {
            name: "phase",
            in: "query",
            schema: { enum: phases },
          },
        ],
        responses: {
          "200": {
            description: "The requests",
            content: {
              "application/json": {
                schema: { type: "object", properties: { items: { type: "array", items: view } } },
              },
            },
          },
          "401": error,
          "403": error,
        },
      },
    },
    "/namespaces/{namespace}/approvalrequests/{name}": {
      get: {
        summary: "Read one ApprovalRequest (RBAC get)",
        parameters: namePath,
        responses: {
          "200": { description: "The request", content: { "application/json": { schema: view } } },
          "401": error,
          "403": error,
          "404": error,
        },
      },
    },
    "/namespaces/{namespace}/approvalrequests/{name}/approve": { post: decision("approve") },
    "/namespaces/{namespace}/approvalrequests/{name}/deny": { post: decision("deny") },
    "/namespaces/{namespace}/approvalrequests/{name}/revoke": { post: decision("revoke") },
  },
} as const;
