# Loads a Vagrantfile with a stand-in `Vagrant` that records what it configures, and prints
# it as JSON: the machines, their provisioners and variables, without Vagrant or a provider.
# Usage: ruby vagrant_recorder.rb DIR   (DIR holds the Vagrantfile)
require "json"

class Recorder
  def initialize
    @attrs = {}
    @children = {}
    @calls = []
  end

  def method_missing(name, *args, **kw, &blk)
    n = name.to_s
    if n.end_with?("=")
      @attrs[n.chomp("=")] = args.first
      return args.first
    end
    if args.empty? && kw.empty? && blk.nil?
      return (@children[n] ||= Recorder.new)
    end
    child = Recorder.new
    @calls << { "name" => n, "args" => args, "kw" => kw, "block" => child }
    blk&.call(child)
    child
  end

  def respond_to_missing?(*)
    true
  end

  def to_h
    { "attrs" => @attrs,
      "children" => @children.transform_values(&:to_h),
      "calls" => @calls.map { |c| c.merge("block" => c["block"].to_h) } }
  end
end

module Vagrant
  def self.configure(_version)
    @root = Recorder.new
    yield @root
  end

  def self.root
    @root
  end
end

dir = File.expand_path(ARGV.fetch(0))
load File.join(dir, "Vagrantfile")
puts JSON.generate(Vagrant.root.to_h)
