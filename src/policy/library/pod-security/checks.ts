/**
 * The Kubernetes Pod Security Standards, check by check, as CEL: the semantics and the
 * messages of upstream Pod Security Admission (k8s.io/pod-security-admission, package
 * policy, check_*.go), every version of every check.
 *
 * Each check version has a rule (true when the pod passes) and a message expression that
 * produces upstream's `reason (detail)`: which containers, which field, which values.
 * Shared sub-expressions are policy variables (`variables.containers` …, see index.ts).
 * Objects are judged as the API server decodes them: an absent field and a null one are
 * the same (the CLI drops nulls when it reads a file; the API server never sends them).
 */

export type Level = "baseline" | "restricted";

export interface CheckVersion {
  /** The minor version of Kubernetes from which this variant applies (`1.25` → 25). */
  readonly minor: number;
  readonly expression: string;
  readonly messageExpression: string;
  /** Variables this variant uses, beyond the shared ones. */
  readonly variables: readonly { name: string; expression: string }[];
}

export interface Check {
  readonly id: string;
  readonly level: Level;
  readonly versions: readonly CheckVersion[];
  /** Baseline checks a restricted check replaces, and from which minor version. */
  readonly overrides?: { readonly id: string; readonly fromMinor: number };
}

// ---- building blocks ---------------------------------------------------------------------

/** `"a", "b"`: upstream's joinQuote over a CEL list of strings. */
const joinQuote = (list: string) => `'"' + ${list}.join('", "') + '"'`;
/** `container` or `containers`, by the size of a CEL list. */
const plural = (list: string, one: string, many: string) => `(size(${list}) == 1 ? '${one}' : '${many}')`;
/** `container "a"` / `containers "a", "b"` for a list of containers. */
const containersPhrase = (list: string) => `${plural(list, "container ", "containers ")} + ${joinQuote(`${list}.map(c, c.name)`)}`;
const sorted = (list: string) => `${list}.distinct().sort()`;
/** Setters joined by " and ": `pod`, then `container(s) "…"` when the list is not empty. */
const setters = (podBad: string, list: string) =>
  `((${podBad}) ? ['pod'] : []) + (size(${list}) > 0 ? [${containersPhrase(list)}] : [])`;
/** A container's security context, or an empty map. */
const scValue = (c: string) => `(has(${c}.securityContext) ? ${c}.securityContext : {})`;
/**
 * Inside a filtered predicate over containers `c`, the container's security context is
 * bound once per container to the name `sc` (see filtered()).
 */
const sc = (_c: "c") => "@sc";
const isTrue = (map: string, field: string) => `(has(${map}.${field}) && ${map}.${field} == true)`;
const isFalse = (map: string, field: string) => `(has(${map}.${field}) && ${map}.${field} == false)`;
const str = (map: string, field: string) => `(has(${map}.${field}) ? ${map}.${field} : '')`;
const v = (name: string, expression: string) => ({ name, expression });

/** The `<range>.exists(x, p)` form of each `<range>.filter(x, p)` list variable, by name. */
const EXISTS_FORM = new Map<string, string>();

/** A list variable `<range>.filter(x, <predicate>)`, for messages that name what failed. */
function filtered(name: string, range: string, x: string, predicate: string) {
  const bound = predicate.includes("@sc") ? `cel.bind(sc, ${scValue(x)}, ${predicate.replaceAll("@sc", "sc")})` : predicate;
  EXISTS_FORM.set(name, `${range}.exists(${x}, ${bound})`);
  return v(name, `${range}.filter(${x}, ${bound})`);
}

/** `size(variables.<name>) == 0` for a filtered list, without building the list: rules allocate nothing. */
function none(name: string): string {
  const exists = EXISTS_FORM.get(name);
  if (exists === undefined) throw new Error(`pod-security: ${name} is not a filtered list variable`);
  return `!${exists}`;
}


const POD_SC = "variables.podSecurityContext";
const CONTAINERS = "variables.containers";
const windows = "variables.isWindows";
const userNamespace = "variables.hostUsersFalse";

// ---- baseline ----------------------------------------------------------------------------

const hostNamespaces: Check = {
  id: "hostNamespaces",
  level: "baseline",
  versions: [
    {
      minor: 0,
      variables: [],
      expression: `!(${isTrue("variables.spec", "hostNetwork")} || ${isTrue("variables.spec", "hostPID")} || ${isTrue("variables.spec", "hostIPC")})`,
      messageExpression: `'host namespaces (' + ((${isTrue("variables.spec", "hostNetwork")} ? ['hostNetwork=true'] : []) + (${isTrue("variables.spec", "hostPID")} ? ['hostPID=true'] : []) + (${isTrue("variables.spec", "hostIPC")} ? ['hostIPC=true'] : [])).join(', ') + ')'`,
    },
  ],
};

const privileged: Check = {
  id: "privileged",
  level: "baseline",
  versions: [
    {
      minor: 0,
      variables: [filtered("privilegedContainers", CONTAINERS, "c", `${isTrue(sc("c"), "privileged")}`)],
      expression: none("privilegedContainers"),
      messageExpression: `'privileged (' + ${containersPhrase("variables.privilegedContainers")} + ' must not set securityContext.privileged=true)'`,
    },
  ],
};

const BASELINE_CAPABILITIES = "['AUDIT_WRITE', 'CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'MKNOD', 'NET_BIND_SERVICE', 'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID', 'SYS_CHROOT']";
/** The capabilities a security context adds, or an empty list. */
const addedBy = (context: string) =>
  `(has(${context}.capabilities) && has(${context}.capabilities.add) ? ${context}.capabilities.add : [])`;
const added = (_c: "c") => addedBy(sc("c"));
const addedValue = (c: string) => addedBy(scValue(c));

const capabilitiesBaseline: Check = {
  id: "capabilities_baseline",
  level: "baseline",
  versions: [
    {
      minor: 0,
      variables: [filtered("nonDefaultCapabilityContainers", CONTAINERS, "c", `${added("c")}.exists(a, !(a in ${BASELINE_CAPABILITIES}))`)],
      expression: none("nonDefaultCapabilityContainers"),
      messageExpression: `'non-default capabilities (' + ${containersPhrase("variables.nonDefaultCapabilityContainers")} + ' must not include ' + ${joinQuote(sorted(`variables.nonDefaultCapabilityContainers.map(c, ${addedValue("c")}.filter(a, !(a in ${BASELINE_CAPABILITIES}))).flatten()`))} + ' in securityContext.capabilities.add)'`,
    },
  ],
};

const hostPathVolumes: Check = {
  id: "hostPathVolumes",
  level: "baseline",
  versions: [
    {
      minor: 0,
      variables: [filtered("hostPathVolumes", "variables.volumes", "v", "has(v.hostPath)")],
      expression: none("hostPathVolumes"),
      messageExpression: `'hostPath volumes (' + ${plural("variables.hostPathVolumes", "volume ", "volumes ")} + ${joinQuote("variables.hostPathVolumes.map(v, v.name)")} + ')'`,
    },
  ],
};

const portsOf = (c: string) => `(has(${c}.ports) ? ${c}.ports : [])`;
const hostPortSet = (p: string) => `(has(${p}.hostPort) && ${p}.hostPort != 0)`;

const hostPorts: Check = {
  id: "hostPorts",
  level: "baseline",
  versions: [
    {
      minor: 0,
      variables: [
        filtered("hostPortContainers", CONTAINERS, "c", `${portsOf("c")}.exists(p, ${hostPortSet("p")})`),
        v("hostPortNumbers", sorted(`variables.hostPortContainers.map(c, ${portsOf("c")}.filter(p, ${hostPortSet("p")}).map(p, string(p.hostPort))).flatten()`)),
      ],
      expression: none("hostPortContainers"),
      messageExpression: `'hostPort (' + ${containersPhrase("variables.hostPortContainers")} + ' ' + ${plural("variables.hostPortContainers", "uses", "use")} + ' ' + ${plural("variables.hostPortNumbers", "hostPort", "hostPorts")} + ' ' + variables.hostPortNumbers.join(', ') + ')'`,
    },
  ],
};

const APPARMOR_PREFIX = "container.apparmor.security.beta.kubernetes.io/";
const appArmorType = (profile: string) => `(has(${profile}.type) ? ${profile}.type : '')`;
const badAppArmor = (holder: string) => `(has(${holder}.appArmorProfile) && !(${appArmorType(`${holder}.appArmorProfile`)} in ['RuntimeDefault', 'Localhost']))`;

const appArmorProfile: Check = {
  id: "appArmorProfile",
  level: "baseline",
  versions: [
    {
      minor: 0,
      variables: [
        v("appArmorPodBad", badAppArmor(POD_SC)),
        filtered("appArmorContainers", CONTAINERS, "c", `${badAppArmor(sc("c"))}`),
        filtered(
          "appArmorAnnotations",
          "variables.annotations",
          "k",
          `k.startsWith('${APPARMOR_PREFIX}') && !(variables.annotations[k] == '' || variables.annotations[k] == 'runtime/default' || variables.annotations[k].startsWith('localhost/'))`,
        ),
        v(
          "appArmorValues",
          `${sorted(`((variables.appArmorPodBad ? [${appArmorType(`${POD_SC}.appArmorProfile`)}] : []) + variables.appArmorContainers.map(c, ${appArmorType(`${scValue("c")}.appArmorProfile`)}))`)} + variables.appArmorAnnotations.map(k, k + '=' + strings.quote(variables.annotations[k])).sort()`,
        ),
      ],
      expression: `!variables.appArmorPodBad && ${none("appArmorContainers")} && ${none("appArmorAnnotations")}`,
      messageExpression: `(size(variables.appArmorValues) == 1 ? 'forbidden AppArmor profile' : 'forbidden AppArmor profiles') + ' (' + (${setters("variables.appArmorPodBad", "variables.appArmorContainers")} + (size(variables.appArmorAnnotations) > 0 ? [${plural("variables.appArmorAnnotations", "annotation", "annotations")}] : [])).join(' and ') + ' must not set AppArmor profile type to ' + ${joinQuote("variables.appArmorValues")} + ')'`,
    },
  ],
};

const seLinuxVersion = (minor: number, types: string): CheckVersion => {
  const options = (holder: string) => `(has(${holder}.seLinuxOptions) ? ${holder}.seLinuxOptions : {})`;
  const badOptions = (o: string) => `(!(${str(o, "type")} in ${types}) || ${str(o, "user")} != '' || ${str(o, "role")} != '')`;
  const allOptions = `([${options(POD_SC)}] + ${CONTAINERS}.map(c, ${options(scValue("c"))}))`;
  return {
    minor,
    variables: [
      v("seLinuxPodBad", badOptions(options(POD_SC))),
      filtered("seLinuxContainers", CONTAINERS, "c", `${badOptions(options(sc("c")))}`),
      v("seLinuxTypes", sorted(`${allOptions}.map(o, ${str("o", "type")}).filter(t, !(t in ${types}))`)),
    ],
    expression: `!variables.seLinuxPodBad && ${none("seLinuxContainers")}`,
    messageExpression: `'seLinuxOptions (' + (${setters("variables.seLinuxPodBad", "variables.seLinuxContainers")}).join(' and ') + ' set forbidden securityContext.seLinuxOptions: ' + ((size(variables.seLinuxTypes) > 0 ? [${plural("variables.seLinuxTypes", "type ", "types ")} + ${joinQuote("variables.seLinuxTypes")}] : []) + (${allOptions}.exists(o, ${str("o", "user")} != '') ? ['user may not be set'] : []) + (${allOptions}.exists(o, ${str("o", "role")} != '') ? ['role may not be set'] : [])).join('; ') + ')'`,
  };
};

const seLinuxOptions: Check = {
  id: "seLinuxOptions",
  level: "baseline",
  versions: [
    seLinuxVersion(0, "['', 'container_t', 'container_init_t', 'container_kvm_t']"),
    seLinuxVersion(31, "['', 'container_t', 'container_init_t', 'container_kvm_t', 'container_engine_t']"),
  ],
};

const procMountVariables = [filtered("procMountContainers", CONTAINERS, "c", `has(${sc("c")}.procMount) && ${sc("c")}.procMount != 'Default'`)];
const procMountMessage = `'procMount (' + ${containersPhrase("variables.procMountContainers")} + ' must not set securityContext.procMount to ' + ${joinQuote(sorted(`variables.procMountContainers.map(c, ${scValue("c")}.procMount)`))} + ')'`;

const procMount: Check = {
  id: "procMount",
  level: "baseline",
  versions: [
    { minor: 0, variables: procMountVariables, expression: none("procMountContainers"), messageExpression: procMountMessage },
    // A pod in a user namespace may unmask /proc at baseline.
    { minor: 35, variables: procMountVariables, expression: `${userNamespace} || ${none("procMountContainers")}`, messageExpression: procMountMessage },
  ],
};

const SECCOMP_POD_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_PREFIX = "container.seccomp.security.alpha.kubernetes.io/";
const seccompAnnotationValid = (value: string) => `(${value} == 'runtime/default' || ${value} == 'docker/default' || ${value}.startsWith('localhost/'))`;
const seccompType = (holder: string) => `(has(${holder}.seccompProfile) ? ${str(`${holder}.seccompProfile`, "type")} : '')`;
const badSeccompField = (holder: string) => `(has(${holder}.seccompProfile) && !(${seccompType(holder)} in ['RuntimeDefault', 'Localhost']))`;

const seccompProfileBaseline: Check = {
  id: "seccompProfile_baseline",
  level: "baseline",
  versions: [
    {
      minor: 0,
      variables: [
        v(
          "seccompBadAnnotations",
          `(['${SECCOMP_POD_ANNOTATION}'] + ${CONTAINERS}.map(c, '${SECCOMP_CONTAINER_PREFIX}' + c.name)).filter(k, k in variables.annotations && !${seccompAnnotationValid("variables.annotations[k]")}).distinct()`,
        ),
      ],
      expression: "size(variables.seccompBadAnnotations) == 0",
      messageExpression: `'seccompProfile (' + ${plural("variables.seccompBadAnnotations", "forbidden annotation ", "forbidden annotations ")} + variables.seccompBadAnnotations.map(k, k + '=' + strings.quote(variables.annotations[k])).sort().join(', ') + ')'`,
    },
    {
      minor: 19,
      variables: [
        v("seccompPodBad", badSeccompField(POD_SC)),
        filtered("seccompContainers", CONTAINERS, "c", `${badSeccompField(sc("c"))}`),
      ],
      expression: `!variables.seccompPodBad && ${none("seccompContainers")}`,
      messageExpression: `'seccompProfile (' + (${setters("variables.seccompPodBad", "variables.seccompContainers")}).join(' and ') + ' must not set securityContext.seccompProfile.type to ' + ${joinQuote(sorted(`((variables.seccompPodBad ? [${seccompType(POD_SC)}] : []) + variables.seccompContainers.map(c, ${seccompType(scValue("c"))}))`))} + ')'`,
    },
  ],
};

const SYSCTLS_BY_MINOR: readonly [number, readonly string[]][] = [
  [0, ["kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"]],
  [27, ["net.ipv4.ip_local_reserved_ports"]],
  [29, ["net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"]],
  [32, ["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"]],
  [37, ["net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_notsent_lowat"]],
];

const sysctls: Check = {
  id: "sysctls",
  level: "baseline",
  versions: SYSCTLS_BY_MINOR.map(([minor]) => {
    const allowed = SYSCTLS_BY_MINOR.filter(([m]) => m <= minor).flatMap(([, names]) => names);
    const list = `[${allowed.map((n) => `'${n}'`).join(", ")}]`;
    return {
      minor,
      variables: [v("forbiddenSysctls", `(has(${POD_SC}.sysctls) ? ${POD_SC}.sysctls : []).map(s, ${str("s", "name")}).filter(n, !(n in ${list}))`)],
      expression: "size(variables.forbiddenSysctls) == 0",
      messageExpression: "'forbidden sysctls (' + variables.forbiddenSysctls.join(', ') + ')'",
    };
  }),
};

const windowsOptions = (holder: string) => `(has(${holder}.windowsOptions) ? ${holder}.windowsOptions : {})`;

const windowsHostProcess: Check = {
  id: "windowsHostProcess",
  level: "baseline",
  versions: [
    {
      minor: 0,
      variables: [
        v("hostProcessPod", isTrue(windowsOptions(POD_SC), "hostProcess")),
        filtered("hostProcessContainers", CONTAINERS, "c", `${isTrue(windowsOptions(sc("c")), "hostProcess")}`),
      ],
      expression: `!variables.hostProcessPod && ${none("hostProcessContainers")}`,
      messageExpression: `'hostProcess (' + (${setters("variables.hostProcessPod", "variables.hostProcessContainers")}).join(' and ') + ' must not set securityContext.windowsOptions.hostProcess=true)'`,
    },
  ],
};

/** Every host named by a container's probes and lifecycle handlers (httpGet and tcpSocket). */
const handlerHosts = (c: string) => {
  const handlers = `[${["livenessProbe", "readinessProbe", "startupProbe"].map((p) => `(has(${c}.${p}) ? ${c}.${p} : {})`).join(", ")}, ${["postStart", "preStop"].map((h) => `(has(${c}.lifecycle) && has(${c}.lifecycle.${h}) ? ${c}.lifecycle.${h} : {})`).join(", ")}]`;
  return `${handlers}.map(h, [(has(h.httpGet) ? ${str("h.httpGet", "host")} : ''), (has(h.tcpSocket) ? ${str("h.tcpSocket", "host")} : '')]).flatten().filter(x, x != '')`;
};

/** Whether a container names a host in any probe or lifecycle handler, allocating nothing. */
const namesHandlerHost = (c: string) => {
  const handlers = [
    ...["livenessProbe", "readinessProbe", "startupProbe"].map((p) => ({ guard: `has(${c}.${p})`, path: `${c}.${p}` })),
    ...["postStart", "preStop"].map((h) => ({ guard: `has(${c}.lifecycle) && has(${c}.lifecycle.${h})`, path: `${c}.lifecycle.${h}` })),
  ];
  return handlers
    .flatMap(({ guard, path }) =>
      ["httpGet", "tcpSocket"].map((kind) => `(${guard} && has(${path}.${kind}) && ${str(`${path}.${kind}`, "host")} != '')`),
    )
    .join(" || ");
};

const hostProbesAndHostLifecycle: Check = {
  id: "hostProbesAndHostLifecycle",
  level: "baseline",
  versions: [
    {
      minor: 34,
      variables: [filtered("hostProbeContainers", CONTAINERS, "c", `(${namesHandlerHost("c")})`)],
      expression: none("hostProbeContainers"),
      messageExpression: `cel.bind(names, ${sorted("variables.hostProbeContainers.map(c, c.name)")}, cel.bind(hosts, ${sorted(`variables.hostProbeContainers.map(c, ${handlerHosts("c")}).flatten()`)}, 'probe or lifecycle host (' + ${plural("names", "container ", "containers ")} + ${joinQuote("names")} + ' ' + ${plural("names", "uses", "use")} + ' ' + ${plural("hosts", "probe or lifecycle host ", "probe or lifecycle hosts ")} + ${joinQuote("hosts")} + ')'))`,
    },
  ],
};

// ---- restricted --------------------------------------------------------------------------

const ALLOWED_VOLUME_SOURCES = "['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'image', 'persistentVolumeClaim', 'projected', 'secret']";
const RESTRICTED_VOLUME_TYPES = [
  "hostPath",
  "gcePersistentDisk",
  "awsElasticBlockStore",
  "gitRepo",
  "nfs",
  "iscsi",
  "glusterfs",
  "rbd",
  "flexVolume",
  "cinder",
  "cephfs",
  "flocker",
  "fc",
  "azureFile",
  "vsphereVolume",
  "quobyte",
  "azureDisk",
  "photonPersistentDisk",
  "portworxVolume",
  "scaleIO",
  "storageos",
];
/** A volume's source keys; a volume with none is an emptyDir once the API server has defaulted it. */
const volumeSources = (vol: string) => `${vol}.filter(k, k != 'name')`;
const volumeType = (vol: string) =>
  `cel.bind(known, [${RESTRICTED_VOLUME_TYPES.map((t) => `'${t}'`).join(", ")}].filter(t, t in ${vol}), size(known) > 0 ? known[0] : 'unknown')`;

const restrictedVolumes: Check = {
  id: "restrictedVolumes",
  level: "restricted",
  overrides: { id: "hostPathVolumes", fromMinor: 0 },
  versions: [
    {
      minor: 0,
      variables: [filtered("restrictedVolumes", "variables.volumes", "vol", `${volumeSources("vol")}.exists(k, !(k in ${ALLOWED_VOLUME_SOURCES}))`)],
      expression: none("restrictedVolumes"),
      messageExpression: `cel.bind(types, ${sorted(`variables.restrictedVolumes.map(vol, ${volumeType("vol")})`)}, 'restricted volume types (' + ${plural("variables.restrictedVolumes", "volume ", "volumes ")} + ${joinQuote("variables.restrictedVolumes.map(vol, vol.name)")} + ' ' + ${plural("variables.restrictedVolumes", "uses", "use")} + ' ' + ${plural("types", "restricted volume type ", "restricted volume types ")} + ${joinQuote("types")} + ')')`,
    },
  ],
};

const escalationVariables = [filtered("escalatingContainers", CONTAINERS, "c", `!${isFalse(sc("c"), "allowPrivilegeEscalation")}`)];
const escalationMessage = `'allowPrivilegeEscalation != false (' + ${containersPhrase("variables.escalatingContainers")} + ' must set securityContext.allowPrivilegeEscalation=false)'`;

const allowPrivilegeEscalation: Check = {
  id: "allowPrivilegeEscalation",
  level: "restricted",
  versions: [
    { minor: 8, variables: escalationVariables, expression: none("escalatingContainers"), messageExpression: escalationMessage },
    { minor: 25, variables: escalationVariables, expression: `${windows} || ${none("escalatingContainers")}`, messageExpression: escalationMessage },
  ],
};

const capabilitiesVariables = [
  filtered("capabilitiesNotDropped", CONTAINERS, "c", `!(has(${sc("c")}.capabilities) && has(${sc("c")}.capabilities.drop) && 'ALL' in ${sc("c")}.capabilities.drop)`),
  filtered("capabilitiesAdded", CONTAINERS, "c", `${added("c")}.exists(a, a != 'NET_BIND_SERVICE')`),
];
const capabilitiesMessage = `'unrestricted capabilities (' + ((size(variables.capabilitiesNotDropped) > 0 ? [${containersPhrase("variables.capabilitiesNotDropped")} + ' must set securityContext.capabilities.drop=["ALL"]'] : []) + (size(variables.capabilitiesAdded) > 0 ? [${containersPhrase("variables.capabilitiesAdded")} + ' must not include ' + ${joinQuote(sorted(`variables.capabilitiesAdded.map(c, ${addedValue("c")}.filter(a, a != 'NET_BIND_SERVICE')).flatten()`))} + ' in securityContext.capabilities.add'] : [])).join('; ') + ')'`;
const capabilitiesRule = `${none("capabilitiesNotDropped")} && ${none("capabilitiesAdded")}`;

const capabilitiesRestricted: Check = {
  id: "capabilities_restricted",
  level: "restricted",
  overrides: { id: "capabilities_baseline", fromMinor: 22 },
  versions: [
    { minor: 22, variables: capabilitiesVariables, expression: capabilitiesRule, messageExpression: capabilitiesMessage },
    { minor: 25, variables: capabilitiesVariables, expression: `${windows} || (${capabilitiesRule})`, messageExpression: capabilitiesMessage },
  ],
};

const nonRootVariables = [
  v("runAsNonRootPodFalse", isFalse(POD_SC, "runAsNonRoot")),
  filtered("runAsNonRootExplicit", CONTAINERS, "c", `${isFalse(sc("c"), "runAsNonRoot")}`),
  filtered("runAsNonRootImplicit", CONTAINERS, "c", `!has(${sc("c")}.runAsNonRoot) && !${isTrue(POD_SC, "runAsNonRoot")}`),
];
const nonRootRule = `!variables.runAsNonRootPodFalse && ${none("runAsNonRootExplicit")} && ${none("runAsNonRootImplicit")}`;
const nonRootMessage = `'runAsNonRoot != true (' + (variables.runAsNonRootPodFalse || size(variables.runAsNonRootExplicit) > 0 ? (${setters("variables.runAsNonRootPodFalse", "variables.runAsNonRootExplicit")}).join(' and ') + ' must not set securityContext.runAsNonRoot=false' : 'pod or ' + ${containersPhrase("variables.runAsNonRootImplicit")} + ' must set securityContext.runAsNonRoot=true') + ')'`;

const runAsNonRoot: Check = {
  id: "runAsNonRoot",
  level: "restricted",
  versions: [
    { minor: 0, variables: nonRootVariables, expression: nonRootRule, messageExpression: nonRootMessage },
    { minor: 35, variables: nonRootVariables, expression: `${userNamespace} || (${nonRootRule})`, messageExpression: nonRootMessage },
  ],
};

const rootUser = (holder: string) => `(has(${holder}.runAsUser) && ${holder}.runAsUser == 0)`;
const runAsUserVariables = [
  v("runAsUserPodRoot", rootUser(POD_SC)),
  filtered("runAsUserContainers", CONTAINERS, "c", `${rootUser(sc("c"))}`),
];
const runAsUserRule = `!variables.runAsUserPodRoot && ${none("runAsUserContainers")}`;
const runAsUserMessage = `'runAsUser=0 (' + (${setters("variables.runAsUserPodRoot", "variables.runAsUserContainers")}).join(' and ') + ' must not set runAsUser=0)'`;

const runAsUser: Check = {
  id: "runAsUser",
  level: "restricted",
  versions: [
    { minor: 23, variables: runAsUserVariables, expression: runAsUserRule, messageExpression: runAsUserMessage },
    { minor: 35, variables: runAsUserVariables, expression: `${userNamespace} || (${runAsUserRule})`, messageExpression: runAsUserMessage },
  ],
};

const seccompRestrictedVariables = [
  v("seccompPodBad", badSeccompField(POD_SC)),
  v("seccompPodValid", `has(${POD_SC}.seccompProfile) && !variables.seccompPodBad`),
  filtered("seccompContainers", CONTAINERS, "c", `${badSeccompField(sc("c"))}`),
  filtered("seccompUnset", CONTAINERS, "c", `!has(${sc("c")}.seccompProfile) && !variables.seccompPodValid`),
];
const seccompRestrictedRule = `!variables.seccompPodBad && ${none("seccompContainers")} && ${none("seccompUnset")}`;
const seccompRestrictedMessage = `'seccompProfile (' + (variables.seccompPodBad || size(variables.seccompContainers) > 0 ? (${setters("variables.seccompPodBad", "variables.seccompContainers")}).join(' and ') + ' must not set securityContext.seccompProfile.type to ' + ${joinQuote(sorted(`((variables.seccompPodBad ? [${seccompType(POD_SC)}] : []) + variables.seccompContainers.map(c, ${seccompType(scValue("c"))}))`))} : 'pod or ' + ${containersPhrase("variables.seccompUnset")} + ' must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"') + ')'`;

const seccompProfileRestricted: Check = {
  id: "seccompProfile_restricted",
  level: "restricted",
  overrides: { id: "seccompProfile_baseline", fromMinor: 19 },
  versions: [
    { minor: 19, variables: seccompRestrictedVariables, expression: seccompRestrictedRule, messageExpression: seccompRestrictedMessage },
    { minor: 25, variables: seccompRestrictedVariables, expression: `${windows} || (${seccompRestrictedRule})`, messageExpression: seccompRestrictedMessage },
  ],
};

const procMountRestricted: Check = {
  id: "procMount_restricted",
  level: "restricted",
  overrides: { id: "procMount", fromMinor: 35 },
  versions: [{ minor: 35, variables: procMountVariables, expression: none("procMountContainers"), messageExpression: procMountMessage }],
};

export const CHECKS: readonly Check[] = [
  appArmorProfile,
  capabilitiesBaseline,
  hostNamespaces,
  hostPathVolumes,
  hostPorts,
  hostProbesAndHostLifecycle,
  privileged,
  procMount,
  seLinuxOptions,
  seccompProfileBaseline,
  sysctls,
  windowsHostProcess,
  allowPrivilegeEscalation,
  capabilitiesRestricted,
  procMountRestricted,
  restrictedVolumes,
  runAsNonRoot,
  runAsUser,
  seccompProfileRestricted,
];

/** Variables every check may use: the pod's spec, security context, containers, volumes, annotations. */
export const SHARED_VARIABLES: readonly { name: string; expression: string }[] = [
  v("spec", "has(object.spec) ? object.spec : {}"),
  v("podSecurityContext", "has(variables.spec.securityContext) ? variables.spec.securityContext : {}"),
  v(
    "containers",
    "(has(variables.spec.initContainers) ? variables.spec.initContainers : []) + (has(variables.spec.containers) ? variables.spec.containers : []) + (has(variables.spec.ephemeralContainers) ? variables.spec.ephemeralContainers : [])",
  ),
  v("volumes", "has(variables.spec.volumes) ? variables.spec.volumes : []"),
  v("annotations", "has(object.metadata) && has(object.metadata.annotations) ? object.metadata.annotations : {}"),
  v("isWindows", "has(variables.spec.os) && has(variables.spec.os.name) && variables.spec.os.name == 'windows'"),
  v("hostUsersFalse", "has(variables.spec.hostUsers) && variables.spec.hostUsers == false"),
];
