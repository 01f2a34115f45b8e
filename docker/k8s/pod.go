package main

import (
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// podSpec returns the pod template of a workload object, or nil.
func podSpec(o *object) *corev1.PodSpec {
	switch t := o.typed.(type) {
	case *appsv1.Deployment:
		return &t.Spec.Template.Spec
	case *appsv1.DaemonSet:
		return &t.Spec.Template.Spec
	case *appsv1.StatefulSet:
		return &t.Spec.Template.Spec
	case *batchv1.Job:
		return &t.Spec.Template.Spec
	case *corev1.Pod:
		return &t.Spec
	}
	return nil
}

// refs are the ConfigMaps and Secrets a pod may read, by namespace/name,
// with their keys: those rendered or in the manifests, and those the README
// says to create before installing.
type refs map[string]map[string]bool

func refKey(kind, ns, name string) string { return kind + " " + ns + "/" + name }

func (r refs) add(kind, ns, name string, keys []string) {
	set := map[string]bool{}
	for _, k := range keys {
		set[k] = true
	}
	r[refKey(kind, ns, name)] = set
}

// missing says what is wrong with a reference to kind ns/name (and key, when
// not empty), or "" when it resolves; an optional reference may be absent.
func (r refs) missing(kind, ns, name, key string, optional *bool) string {
	if optional != nil && *optional {
		return ""
	}
	keys, ok := r[refKey(kind, ns, name)]
	switch {
	case !ok:
		return fmt.Sprintf("%s %s is neither rendered, in the manifests, nor one the README says to create", kind, name)
	case key != "" && !keys[key]:
		return fmt.Sprintf("%s %s has no key %q", kind, name, key)
	}
	return ""
}

// checkPod applies the API server's rules for a pod template that the
// generated types cannot express (k8s.io/kubernetes pkg/apis/core/validation
// ValidatePodSpec, the parts a values file can get wrong), and resolves what
// the pod reads from ConfigMaps and Secrets.
func checkPod(o *object, spec *corev1.PodSpec, r refs) []string {
	var errs []string
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Sprintf("%s: %s %s: ", o.src, o.gvk.Kind, o.name)+fmt.Sprintf(format, args...))
	}
	if len(spec.Containers) == 0 {
		bad("spec.template.spec.containers: Required value")
	}
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		if volumes[v.Name] {
			bad("volume %q: Duplicate value", v.Name)
		}
		volumes[v.Name] = true
		if v.ConfigMap != nil {
			if m := r.missing("ConfigMap", o.ns, v.ConfigMap.Name, "", v.ConfigMap.Optional); m != "" {
				bad("volume %q: %s", v.Name, m)
			}
		}
		if v.Secret != nil {
			if m := r.missing("Secret", o.ns, v.Secret.SecretName, "", v.Secret.Optional); m != "" {
				bad("volume %q: %s", v.Name, m)
			}
		}
	}
	names := map[string]bool{}
	portNames := map[string]bool{}
	check := func(c *corev1.Container, init bool) {
		where := "container " + strconv.Quote(c.Name)
		if init {
			where = "init container " + strconv.Quote(c.Name)
		}
		for _, msg := range validation.IsDNS1123Label(c.Name) {
			bad("%s: name: %s", where, msg)
		}
		if names[c.Name] {
			bad("%s: name: Duplicate value", where)
		}
		names[c.Name] = true
		if c.Image == "" {
			bad("%s: image: Required value", where)
		}
		sidecar := init && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		if init && c.RestartPolicy != nil && !sidecar {
			bad("%s: restartPolicy: only Always is allowed for an init container", where)
		}
		if !init && c.RestartPolicy != nil {
			bad("%s: restartPolicy: only init containers may set it", where)
		}
		ports := map[string]int32{}
		for _, p := range c.Ports {
			if p.ContainerPort < 1 || p.ContainerPort > 65535 {
				bad("%s: port %d: must be between 1 and 65535", where, p.ContainerPort)
			}
			if p.Name == "" {
				continue
			}
			for _, msg := range validation.IsValidPortName(p.Name) {
				bad("%s: port name %q: %s", where, p.Name, msg)
			}
			if portNames[p.Name] {
				bad("%s: port name %q: Duplicate value", where, p.Name)
			}
			portNames[p.Name] = true
			ports[p.Name] = p.ContainerPort
		}
		for _, pr := range []struct {
			kind string
			p    *corev1.Probe
		}{{"startupProbe", c.StartupProbe}, {"readinessProbe", c.ReadinessProbe}, {"livenessProbe", c.LivenessProbe}} {
			kind, p := pr.kind, pr.p
			if p == nil {
				continue
			}
			if init && !sidecar {
				bad("%s: %s: may not be set for init containers without restartPolicy Always", where, kind)
			}
			if port, ok := probePort(p); ok {
				if _, err := resolvePort(port, ports); err != nil {
					bad("%s: %s: %v", where, kind, err)
				}
			}
		}
		mounts := map[string]bool{}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				bad("%s: volumeMount %q: no volume of that name in the pod", where, m.Name)
			}
			if mounts[m.MountPath] {
				bad("%s: volumeMount %q: mountPath %s: Duplicate value", where, m.Name, m.MountPath)
			}
			mounts[m.MountPath] = true
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if s := e.ValueFrom.SecretKeyRef; s != nil {
				if m := r.missing("Secret", o.ns, s.Name, s.Key, s.Optional); m != "" {
					bad("%s: env %s: %s", where, e.Name, m)
				}
			}
			if s := e.ValueFrom.ConfigMapKeyRef; s != nil {
				if m := r.missing("ConfigMap", o.ns, s.Name, s.Key, s.Optional); m != "" {
					bad("%s: env %s: %s", where, e.Name, m)
				}
			}
		}
		for _, e := range c.EnvFrom {
			if e.ConfigMapRef != nil {
				if m := r.missing("ConfigMap", o.ns, e.ConfigMapRef.Name, "", e.ConfigMapRef.Optional); m != "" {
					bad("%s: envFrom: %s", where, m)
				}
			}
			if e.SecretRef != nil {
				if m := r.missing("Secret", o.ns, e.SecretRef.Name, "", e.SecretRef.Optional); m != "" {
					bad("%s: envFrom: %s", where, m)
				}
			}
		}
	}
	for i := range spec.InitContainers {
		check(&spec.InitContainers[i], true)
	}
	for i := range spec.Containers {
		check(&spec.Containers[i], false)
	}
	return errs
}

func probePort(p *corev1.Probe) (intstr.IntOrString, bool) {
	switch {
	case p.HTTPGet != nil:
		return p.HTTPGet.Port, true
	case p.TCPSocket != nil:
		return p.TCPSocket.Port, true
	}
	return intstr.IntOrString{}, false
}

// resolvePort is the kubelet's reading of a probe's port: a number, or the
// name of one of the container's ports.
func resolvePort(port intstr.IntOrString, named map[string]int32) (int32, error) {
	if port.Type == intstr.Int {
		if port.IntVal < 1 || port.IntVal > 65535 {
			return 0, fmt.Errorf("port %d: must be between 1 and 65535", port.IntVal)
		}
		return port.IntVal, nil
	}
	n, ok := named[port.StrVal]
	if !ok {
		return 0, fmt.Errorf("port %q: the container has no port of that name", port.StrVal)
	}
	return n, nil
}
