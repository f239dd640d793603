// Lists the public surface of .NET types from reference assemblies, for lockdown/agent/surface/refresh.py.
// Reads metadata only (Mono.Cecil), never loads or runs the assemblies. C# 5, compiled by refresh.py with mcs.
// Usage: mono Extract.exe <depth> <assembly.dll>... -- <type full name>...
// Output, tab-separated, one line each:
//   T <type> <assembly> <kind> <base> <interfaces ;-joined>
//   M <type> <name> <ctor|method|property|field|event> <static 0|1> <parameter types ;-joined> <required count> <params array 0|1> <type or return type> <settable 0|1>
//   X <type>   (asked for, found in no assembly)
using System;
using System.Collections.Generic;
using System.Linq;
using Mono.Cecil;

public static class Extract {
    static readonly Dictionary<string, TypeDefinition> Types = new Dictionary<string, TypeDefinition>(StringComparer.OrdinalIgnoreCase);

    static string Name(TypeReference t) {
        if (t == null) return "";
        if (t.IsByReference) return Name(((ByReferenceType)t).ElementType) + "&";
        if (t.IsArray) return Name(((ArrayType)t).ElementType) + "[]";
        if (t.IsGenericParameter) return t.Name;
        var generic = t as GenericInstanceType;
        if (generic != null) return Name(generic.ElementType) + "[" + string.Join(",", generic.GenericArguments.Select(Name)) + "]";
        return t.FullName.Replace('/', '+');
    }

    static void Index(TypeDefinition t) {
        if (!(t.IsPublic || t.IsNestedPublic)) return;
        var name = t.FullName.Replace('/', '+');
        if (!Types.ContainsKey(name)) Types[name] = t;
        foreach (var nested in t.NestedTypes) Index(nested);
    }

    static string Kind(TypeDefinition t) {
        if (t.IsEnum) return "enum";
        if (t.IsInterface) return "interface";
        if (t.IsValueType) return "struct";
        if (t.BaseType != null && t.BaseType.FullName == "System.MulticastDelegate") return "delegate";
        return "class";
    }

    static string Plain(TypeReference t) {
        var n = Name(t).TrimEnd('&');
        while (n.EndsWith("[]")) n = n.Substring(0, n.Length - 2);
        var bracket = n.IndexOf('[');
        return bracket > 0 ? n.Substring(0, bracket) : n;
    }

    static string Parameters(MethodReference m) {
        return string.Join(";", m.Parameters.Select(p => Name(p.ParameterType)));
    }

    static int Required(MethodDefinition m) {
        return m.Parameters.Count(p => !(p.IsOptional || p.HasConstant) && !IsParams(p));
    }

    static bool IsParams(ParameterDefinition p) {
        return p.CustomAttributes.Any(a => a.AttributeType.FullName == "System.ParamArrayAttribute");
    }

    public static int Main(string[] args) {
        var depth = int.Parse(args[0]);
        var split = Array.IndexOf(args, "--");
        var resolver = new DefaultAssemblyResolver();
        foreach (var path in args.Skip(1).Take(split - 1)) {
            var assembly = AssemblyDefinition.ReadAssembly(path, new ReaderParameters { AssemblyResolver = resolver });
            foreach (var t in assembly.MainModule.Types) Index(t);
        }
        var queue = new Queue<KeyValuePair<string, int>>();
        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var wanted in args.Skip(split + 1)) queue.Enqueue(new KeyValuePair<string, int>(wanted, 0));
        var output = new List<string>();
        while (queue.Count > 0) {
            var item = queue.Dequeue();
            if (!seen.Add(item.Key)) continue;
            TypeDefinition t;
            if (!Types.TryGetValue(item.Key, out t)) { output.Add("X\t" + item.Key); continue; }
            var name = t.FullName.Replace('/', '+');
            var interfaces = t.Interfaces.Select(i => Plain(i.InterfaceType)).ToList();
            output.Add(string.Join("\t", "T", name, t.Module.Assembly.Name.Name, Kind(t), t.BaseType == null ? "" : Plain(t.BaseType), string.Join(";", interfaces)));
            var related = new List<string>();
            if (t.BaseType != null) queue.Enqueue(new KeyValuePair<string, int>(Plain(t.BaseType), item.Value));
            foreach (var i in interfaces) queue.Enqueue(new KeyValuePair<string, int>(i, item.Value));
            foreach (var m in t.Methods.Where(m => m.IsPublic && !(m.IsSpecialName && !m.IsConstructor))) {
                if (m.IsConstructor && m.IsStatic) continue;
                output.Add(string.Join("\t", "M", name, m.IsConstructor ? ".ctor" : m.Name, m.IsConstructor ? "ctor" : "method", m.IsStatic ? "1" : "0",
                    Parameters(m), Required(m).ToString(), m.Parameters.Any(IsParams) ? "1" : "0", Name(m.ReturnType), "0"));
                related.Add(Plain(m.ReturnType));
            }
            foreach (var p in t.Properties) {
                var getter = p.GetMethod != null && p.GetMethod.IsPublic ? p.GetMethod : null;
                var setter = p.SetMethod != null && p.SetMethod.IsPublic ? p.SetMethod : null;
                var accessor = getter ?? setter;
                if (accessor == null) continue;
                output.Add(string.Join("\t", "M", name, p.Name, "property", accessor.IsStatic ? "1" : "0",
                    string.Join(";", p.Parameters.Select(x => Name(x.ParameterType))), p.Parameters.Count.ToString(), "0", Name(p.PropertyType), setter != null ? "1" : "0"));
                related.Add(Plain(p.PropertyType));
            }
            foreach (var f in t.Fields.Where(f => f.IsPublic)) {
                output.Add(string.Join("\t", "M", name, f.Name, "field", f.IsStatic ? "1" : "0", "", "0", "0", Name(f.FieldType), f.IsInitOnly || f.IsLiteral ? "0" : "1"));
            }
            foreach (var e in t.Events.Where(e => e.AddMethod != null && e.AddMethod.IsPublic)) {
                output.Add(string.Join("\t", "M", name, e.Name, "event", e.AddMethod.IsStatic ? "1" : "0", "", "0", "0", Name(e.EventType), "0"));
            }
            if (item.Value < depth) foreach (var r in related.Distinct()) queue.Enqueue(new KeyValuePair<string, int>(r, item.Value + 1));
        }
        foreach (var line in output) Console.WriteLine(line);
        return 0;
    }
}
