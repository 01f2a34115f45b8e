package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	schemaobjectmeta "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/objectmeta"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/api/validate/content"
	metavalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// object is one Kubernetes object of a rendered chart or a manifest file.
type object struct {
	src   string // where it comes from, for messages: "manifests/ingress.yaml:12"
	gvk   schema.GroupVersionKind
	name  string         // metadata.name
	ns    string         // metadata.namespace, or the install's namespace when namespaced and unset
	obj   map[string]any // the document as JSON decodes it
	typed runtime.Object // the built-in type it decodes into, nil for a custom resource
}

func (o *object) String() string { return fmt.Sprintf("%s %s (%s)", o.gvk.Kind, o.name, o.src) }

// document is a YAML document of a file, with the line it starts on.
type document struct {
	line int
	text string
}

// splitDocuments splits a multi-document YAML stream on "---" lines, as
// kubectl's YAML reader does; a document's line is that of its first line
// that is neither blank nor a comment.
func splitDocuments(text string) []document {
	var docs []document
	var cur []string
	start := 0
	flush := func() {
		if start > 0 {
			docs = append(docs, document{start, strings.Join(cur, "\n")})
		}
		cur, start = nil, 0
	}
	for i, line := range strings.Split(text, "\n") {
		if line == "---" || strings.HasPrefix(line, "--- ") {
			flush()
			continue
		}
		cur = append(cur, line)
		if t := strings.TrimSpace(line); start == 0 && t != "" && !strings.HasPrefix(t, "#") {
			start = i + 1
		}
	}
	flush()
	return docs
}

// clusterScoped are the built-in kinds without a namespace that a chart or
// these manifests may hold.
var clusterScoped = map[string]bool{"ClusterRole": true, "ClusterRoleBinding": true, "IngressClass": true,
	"ValidatingWebhookConfiguration": true, "MutatingWebhookConfiguration": true, "Namespace": true,
	"CustomResourceDefinition": true, "PriorityClass": true, "StorageClass": true, "PersistentVolume": true}

// kube validates objects as a Kubernetes API server would accept them on
// create: built-in kinds by strict decoding into client-go's types (unknown
// and duplicate fields, wrong types and unknown kinds refused, as kubectl's
// default strict field validation does) and object metadata with
// apimachinery's rules; custom resources with their CRD's OpenAPI v3 schema
// the way the apiextensions server does it: defaulting, unknown-field
// pruning (reported, not dropped), the schema, list-type invariants and the
// x-kubernetes-validations CEL rules.
type kube struct {
	decoder runtime.Decoder
	crds    map[schema.GroupVersionKind]*crdVersion
}

type crdVersion struct {
	namespaced bool
	status     bool // has the status subresource
	structural *structuralschema.Structural
	validator  apiservervalidation.SchemaValidator
	cel        *cel.Validator
}

func newKube(crdFile string) (*kube, error) {
	k := &kube{
		decoder: serializer.NewCodecFactory(clientgoscheme.Scheme, serializer.EnableStrict).UniversalDeserializer(),
		crds:    map[schema.GroupVersionKind]*crdVersion{},
	}
	text, err := os.ReadFile(crdFile)
	if err != nil {
		return nil, err
	}
	for _, d := range splitDocuments(string(text)) {
		var crd apiextv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict([]byte(d.text), &crd); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", crdFile, d.line, err)
		}
		if crd.Kind != "CustomResourceDefinition" {
			continue
		}
		for _, v := range crd.Spec.Versions {
			if !v.Served || v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
				continue
			}
			var internal apiextensions.JSONSchemaProps
			if err := apiextv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
				return nil, fmt.Errorf("%s: CRD %s %s: %w", crdFile, crd.Name, v.Name, err)
			}
			s, err := structuralschema.NewStructural(&internal)
			if err != nil {
				return nil, fmt.Errorf("%s: CRD %s %s: not a structural schema: %w", crdFile, crd.Name, v.Name, err)
			}
			validator, _, err := apiservervalidation.NewSchemaValidator(&internal)
			if err != nil {
				return nil, fmt.Errorf("%s: CRD %s %s: %w", crdFile, crd.Name, v.Name, err)
			}
			gvk := schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind}
			k.crds[gvk] = &crdVersion{
				namespaced: crd.Spec.Scope == apiextv1.NamespaceScoped,
				status:     v.Subresources != nil && v.Subresources.Status != nil,
				structural: s,
				validator:  validator,
				cel:        cel.NewValidator(s, true, celconfig.PerCallLimit),
			}
		}
	}
	return k, nil
}

// decode reads one document into an object and validates it; the errors
// name the object.
func (k *kube) decode(src, text, namespace string) (*object, []string) {
	j, err := yaml.YAMLToJSONStrict([]byte(text))
	if err != nil {
		return nil, []string{fmt.Sprintf("%s: %v", src, err)}
	}
	var m map[string]any
	if err := json.Unmarshal(j, &m); err != nil || m == nil {
		return nil, []string{fmt.Sprintf("%s: not a Kubernetes object (want a mapping)", src)}
	}
	var tm metav1.TypeMeta
	_ = json.Unmarshal(j, &tm)
	gvk := tm.GroupVersionKind()
	o := &object{src: src, gvk: gvk, obj: m}
	if md, ok := m["metadata"].(map[string]any); ok {
		o.name, _ = md["name"].(string)
		o.ns, _ = md["namespace"].(string)
	}
	if gvk.Kind == "" || gvk.Version == "" {
		return nil, []string{fmt.Sprintf("%s: apiVersion and kind are required", src)}
	}
	if crd, ok := k.crds[gvk]; ok {
		if o.ns == "" && crd.namespaced {
			o.ns = namespace
		}
		return o, k.validateCustom(o, crd)
	}
	typed, _, err := k.decoder.Decode(j, nil, nil)
	if err != nil {
		if runtime.IsNotRegisteredError(err) {
			return nil, []string{fmt.Sprintf("%s: %s %s: no schema: neither a Kubernetes kind nor one of the chart's CRDs", src, gvk.GroupVersion(), gvk.Kind)}
		}
		return nil, []string{fmt.Sprintf("%s: %s %s: %v", src, gvk.Kind, o.name, err)}
	}
	o.typed = typed
	if o.ns == "" && !clusterScoped[gvk.Kind] {
		o.ns = namespace
	}
	meta, ok := typed.(metav1.Object)
	if !ok {
		return o, nil
	}
	var errs []string
	for _, e := range metavalidation.ValidateObjectMetaAccessor(withNamespace(meta, o.ns), !clusterScoped[gvk.Kind], nameRule(gvk.Kind), field.NewPath("metadata")) {
		errs = append(errs, fmt.Sprintf("%s: %s %s: %v", src, gvk.Kind, o.name, e))
	}
	return o, errs
}

// withNamespace gives a namespaced object the namespace kubectl apply -n
// would, for metadata validation.
func withNamespace(meta metav1.Object, ns string) metav1.Object {
	if meta.GetNamespace() == "" && ns != "" {
		meta.SetNamespace(ns)
	}
	return meta
}

// nameRule is the API server's rule for a kind's names
// (k8s.io/kubernetes pkg/apis/*/validation): Services are DNS-1035 labels,
// RBAC objects path segments, everything else here DNS subdomains.
func nameRule(kind string) metavalidation.ValidateNameFunc {
	switch kind {
	case "Service":
		return metavalidation.NameIsDNS1035Label
	case "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding":
		return func(name string, _ bool) []string { return content.IsPathSegmentName(name) }
	}
	return metavalidation.NameIsDNSSubdomain
}

// validateCustom is the apiextensions server's create path for a custom
// resource (pkg/registry/customresource: strategy Validate), with unknown
// fields reported as kubectl's strict field validation reports them.
func (k *kube) validateCustom(o *object, crd *crdVersion) []string {
	prefix := fmt.Sprintf("%s: %s %s: ", o.src, o.gvk.Kind, o.name)
	var errs []string
	fail := func(list field.ErrorList) {
		for _, e := range list {
			errs = append(errs, prefix+e.Error())
		}
	}
	_, _, unknownMeta, err := schemaobjectmeta.GetObjectMetaWithOptions(o.obj, schemaobjectmeta.ObjectMetaOptions{ReturnUnknownFieldPaths: true})
	if err != nil {
		errs = append(errs, prefix+"metadata: "+err.Error())
	}
	structuraldefaulting.Default(o.obj, crd.structural)
	unknown := pruning.PruneWithOptions(o.obj, crd.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
	for _, p := range append(unknownMeta, unknown...) {
		errs = append(errs, prefix+fmt.Sprintf("unknown field %q", p))
	}
	if crd.status {
		delete(o.obj, "status") // PrepareForCreate: a create cannot set status
	}
	fail(apiservervalidation.ValidateCustomResource(nil, o.obj, crd.validator))
	if md, _, err := schemaobjectmeta.GetObjectMeta(o.obj, false); err == nil {
		if md.Namespace == "" && crd.namespaced {
			md.Namespace = o.ns
		}
		fail(metavalidation.ValidateObjectMetaAccessor(md, crd.namespaced, metavalidation.NameIsDNSSubdomain, field.NewPath("metadata")))
	}
	fail(schemaobjectmeta.Validate(context.Background(), nil, o.obj, crd.structural, false))
	fail(listtype.ValidateListSetsAndMaps(nil, crd.structural, o.obj))
	if len(errs) == 0 {
		list, _ := crd.cel.Validate(context.Background(), nil, crd.structural, o.obj, nil, celconfig.RuntimeCELCostBudget)
		fail(list)
	}
	return errs
}
