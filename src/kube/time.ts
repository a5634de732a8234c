/** Kubernetes timestamps (metav1.Time): RFC 3339 in UTC, whole seconds. */
export function kubeTime(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}
